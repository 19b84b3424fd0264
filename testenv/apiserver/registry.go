package main

// One generic etcd-backed registry per resource, with the create/update semantics of the real
// API server that an ingress controller can observe:
//   - create clears .status (for kinds with a status subresource) and sets generation 1 (kinds with .spec);
//   - updates of the main resource keep .status; updates of /status keep .spec;
//   - metadata.generation is bumped when .spec changes.
// There is no validation and no defaulting.

import (
	"context"
	"reflect"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// resource describes one served resource.
type resource struct {
	gv         schema.GroupVersion
	plural     string
	singular   string
	shortNames []string
	namespaced bool
	status     bool // has a /status subresource
	newObj     func() runtime.Object
	newList    func() runtime.Object
	attrs      storage.AttrFunc // extra field selectors; nil: metadata.name (and metadata.namespace)
	table      *table           // kubectl get columns (table.go); nil: name and creation time
}

type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	res       *resource
	forStatus bool // the strategy of the /status subresource
}

func (s strategy) NamespaceScoped() bool          { return s.res.namespaced }
func (s strategy) AllowCreateOnUpdate() bool      { return false }
func (s strategy) AllowUnconditionalUpdate() bool { return true }
func (s strategy) Canonicalize(runtime.Object)    {}
func (s strategy) Validate(context.Context, runtime.Object) field.ErrorList {
	return nil
}
func (s strategy) ValidateUpdate(context.Context, runtime.Object, runtime.Object) field.ErrorList {
	return nil
}
func (s strategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (s strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

// fieldOf returns the addressable struct field `name` of obj, or an invalid Value.
func fieldOf(obj runtime.Object, name string) reflect.Value {
	return reflect.ValueOf(obj).Elem().FieldByName(name)
}

func (s strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if st := fieldOf(obj, "Status"); s.res.status && st.IsValid() {
		st.Set(reflect.Zero(st.Type()))
	}
	m, _ := meta.Accessor(obj)
	if fieldOf(obj, "Spec").IsValid() {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
}

func (s strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	keep := "Status" // main resource: status is owned by /status
	if s.forStatus {
		keep = "Spec"
	}
	if s.res.status {
		if f := fieldOf(obj, keep); f.IsValid() {
			f.Set(fieldOf(old, keep))
		}
	}
	m, _ := meta.Accessor(obj)
	om, _ := meta.Accessor(old)
	gen := om.GetGeneration()
	if spec := fieldOf(obj, "Spec"); spec.IsValid() && !reflect.DeepEqual(spec.Interface(), fieldOf(old, "Spec").Interface()) {
		gen++
	}
	m.SetGeneration(gen)
}

// GetResetFields tells server-side apply which fields a request to this endpoint cannot set.
func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if !s.res.status {
		return nil
	}
	reset := "status"
	if s.forStatus {
		reset = "spec"
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.res.gv.String()): fieldpath.NewSet(fieldpath.MakePathOrDie(reset)),
	}
}

// storeREST is the main endpoint of a resource; it adds short names for kubectl.
type storeREST struct {
	*genericregistry.Store
	shortNames []string
}

func (r *storeREST) ShortNames() []string { return r.shortNames }

// statusREST serves …/status with the status strategy.
type statusREST struct{ store *genericregistry.Store }

func (r *statusREST) New() runtime.Object { return r.store.New() }
func (r *statusREST) Destroy()            {} // the main store owns the storage
func (r *statusREST) Get(ctx context.Context, name string, opts *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, opts)
}
func (r *statusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, _ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	// Subresources can never create the object.
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}
func (r *statusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}
func (r *statusREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, obj, opts)
}

// storage builds the REST endpoints of res: "plural" and, if it has one, "plural/status".
func (res *resource) storage(scheme *runtime.Scheme, opts generic.RESTOptionsGetter) (map[string]rest.Storage, error) {
	gr := res.gv.WithResource(res.plural).GroupResource()
	main := strategy{ObjectTyper: scheme, NameGenerator: names.SimpleNameGenerator, res: res}
	store := &genericregistry.Store{
		NewFunc:                   res.newObj,
		NewListFunc:               res.newList,
		DefaultQualifiedResource:  gr,
		SingularQualifiedResource: res.gv.WithResource(res.singular).GroupResource(),
		CreateStrategy:            main,
		UpdateStrategy:            main,
		DeleteStrategy:            main,
		ResetFieldsStrategy:       main,
	}
	if store.TableConvertor = rest.NewDefaultTableConvertor(gr); res.table != nil {
		store.TableConvertor = res.table
	}
	attrs := res.attrs
	if attrs == nil {
		attrs = storage.DefaultClusterScopedAttr
		if res.namespaced {
			attrs = storage.DefaultNamespaceScopedAttr
		}
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: opts, AttrFunc: attrs}); err != nil {
		return nil, err
	}
	out := map[string]rest.Storage{res.plural: &storeREST{Store: store, shortNames: res.shortNames}}
	if res.status {
		st := strategy{ObjectTyper: scheme, NameGenerator: names.SimpleNameGenerator, res: res, forStatus: true}
		statusStore := *store
		statusStore.CreateStrategy = nil
		statusStore.DeleteStrategy = nil
		statusStore.UpdateStrategy = st
		statusStore.ResetFieldsStrategy = st
		out[res.plural+"/status"] = &statusREST{store: &statusStore}
	}
	return out, nil
}
