// Command weir-testenv-apiserver is a small Kubernetes API server for Weir's tests.
//
// It serves the resources an ingress controller reads and writes, stored in etcd through the same
// machinery as kube-apiserver (k8s.io/apiserver: generic registry, etcd3 storage, watch cache), so
// list/watch, resourceVersions, bookmarks, 410 Expired, label and field selectors, status
// subresources and server-side apply behave as in a cluster. It has no controllers, no admission,
// no validation and no defaulting. Authentication is anonymous and everything is allowed.
package main

import (
	goflag "flag"
	"fmt"
	"net"
	"os"

	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/util/compatibility"
	"k8s.io/klog/v2"
)

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

func secretAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return nil, nil, fmt.Errorf("not a Secret: %T", obj)
	}
	return s.Labels, generic.AddObjectMetaFieldsSet(fields.Set{"type": string(s.Type)}, &s.ObjectMeta, true), nil
}

var (
	core         = corev1.SchemeGroupVersion
	discovery    = discoveryv1.SchemeGroupVersion
	events       = eventsv1.SchemeGroupVersion
	networking   = networkingv1.SchemeGroupVersion
	coordination = coordinationv1.SchemeGroupVersion
)

// The served resources.
var resources = []*resource{
	{gv: core, plural: "namespaces", table: tableNamespace, singular: "namespace", shortNames: []string{"ns"},
		newObj: func() runtime.Object { return &corev1.Namespace{} }, newList: func() runtime.Object { return &corev1.NamespaceList{} }},
	{gv: core, plural: "services", table: tableService, singular: "service", shortNames: []string{"svc"}, namespaced: true, status: true,
		newObj: func() runtime.Object { return &corev1.Service{} }, newList: func() runtime.Object { return &corev1.ServiceList{} }},
	{gv: core, plural: "secrets", table: tableSecret, singular: "secret", namespaced: true, attrs: secretAttrs,
		newObj: func() runtime.Object { return &corev1.Secret{} }, newList: func() runtime.Object { return &corev1.SecretList{} }},
	{gv: core, plural: "configmaps", table: tableConfigMap, singular: "configmap", shortNames: []string{"cm"}, namespaced: true,
		newObj: func() runtime.Object { return &corev1.ConfigMap{} }, newList: func() runtime.Object { return &corev1.ConfigMapList{} }},
	{gv: core, plural: "events", table: tableEvent, singular: "event", shortNames: []string{"ev"}, namespaced: true,
		newObj: func() runtime.Object { return &corev1.Event{} }, newList: func() runtime.Object { return &corev1.EventList{} }},
	{gv: discovery, plural: "endpointslices", table: tableEndpointSlice, singular: "endpointslice", namespaced: true,
		newObj: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, newList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} }},
	{gv: events, plural: "events", table: tableEvent, singular: "event", namespaced: true, // what kube-runtime's Recorder writes
		newObj: func() runtime.Object { return &eventsv1.Event{} }, newList: func() runtime.Object { return &eventsv1.EventList{} }},
	{gv: networking, plural: "ingresses", table: tableIngress, singular: "ingress", shortNames: []string{"ing"}, namespaced: true, status: true,
		newObj: func() runtime.Object { return &networkingv1.Ingress{} }, newList: func() runtime.Object { return &networkingv1.IngressList{} }},
	{gv: networking, plural: "ingressclasses", table: tableIngressClass, singular: "ingressclass",
		newObj: func() runtime.Object { return &networkingv1.IngressClass{} }, newList: func() runtime.Object { return &networkingv1.IngressClassList{} }},
	{gv: coordination, plural: "leases", table: tableLease, singular: "lease", namespaced: true,
		newObj: func() runtime.Object { return &coordinationv1.Lease{} }, newList: func() runtime.Object { return &coordinationv1.LeaseList{} }},
}

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(discoveryv1.AddToScheme(scheme))
	utilruntime.Must(eventsv1.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(coordinationv1.AddToScheme(scheme))
	// The API machinery converts requests to an "internal" version before storing them. There is
	// no separate internal type here: the v1 Go types are registered as the internal ones too, so
	// that conversion is the identity.
	for _, r := range resources {
		internal := schema.GroupVersion{Group: r.gv.Group, Version: runtime.APIVersionInternal}
		scheme.AddKnownTypes(internal, r.newObj(), r.newList())
	}
	for _, gv := range []schema.GroupVersion{core, discovery, events, networking, coordination} {
		utilruntime.Must(scheme.SetVersionPriority(gv))
	}
	utilruntime.Must(scheme.AddFieldLabelConversionFunc(core.WithKind("Secret"), func(label, value string) (string, string, error) {
		switch label {
		case "metadata.name", "metadata.namespace", "type":
			return label, value, nil
		}
		return "", "", fmt.Errorf("field label not supported: %s", label)
	}))
}

func main() {
	etcd := genericoptions.NewEtcdOptions(storagebackend.NewDefaultConfig("/registry", codecs.LegacyCodec(core, discovery, events, networking, coordination)))
	etcd.StorageConfig.Transport.ServerList = []string{"http://127.0.0.1:2379"}
	serving := genericoptions.NewSecureServingOptions()
	serving.BindAddress = net.ParseIP("127.0.0.1")
	serving.BindPort = 6443
	serving.ServerCert.CertDirectory = ""
	secure := serving.WithLoopback()

	fs := pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)
	etcd.AddFlags(fs)   // --etcd-servers, --watch-cache, --etcd-compaction-interval, --etcd-prefix, ...
	secure.AddFlags(fs) // --bind-address, --secure-port, --cert-dir, --tls-cert-file, ...
	klogFlags := goflag.NewFlagSet("klog", goflag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags) // -v, --logtostderr, ...
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: %s [flags]\n\nA Kubernetes API server for tests (no controllers, no validation, no defaulting).\n\n%s", os.Args[0], fs.FlagUsages())
	}
	_ = fs.Parse(os.Args[1:])

	if err := run(etcd, secure); err != nil {
		fmt.Fprintln(os.Stderr, "weir-testenv-apiserver:", err)
		os.Exit(1)
	}
}

func run(etcd *genericoptions.EtcdOptions, secure *genericoptions.SecureServingOptionsWithLoopback) error {
	if errs := append(etcd.Validate(), secure.Validate()...); len(errs) > 0 {
		return fmt.Errorf("invalid flags: %v", errs)
	}
	if err := secure.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}

	cfg := genericapiserver.NewRecommendedConfig(codecs)
	cfg.EffectiveVersion = compatibility.DefaultBuildEffectiveVersion()
	cfg.PublicAddress = net.ParseIP("127.0.0.1")
	if err := secure.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return err
	}
	if err := etcd.ApplyTo(&cfg.Config); err != nil {
		return err
	}
	cfg.Authentication.Authenticator = anonymous.NewAuthenticator(nil)
	cfg.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()

	namer := openapinamer.NewDefinitionNamer(scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openAPIDefinitions(scheme), namer)
	cfg.OpenAPIConfig.Info.Title = "weir-testenv"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openAPIDefinitions(scheme), namer)
	cfg.OpenAPIV3Config.Info.Title = "weir-testenv"

	server, err := cfg.Complete().New("weir-testenv-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}

	groups := map[string]*genericapiserver.APIGroupInfo{}
	var order []string
	for _, r := range resources {
		info, ok := groups[r.gv.Group]
		if !ok {
			i := genericapiserver.NewDefaultAPIGroupInfo(r.gv.Group, scheme, runtime.NewParameterCodec(scheme), codecs)
			info = &i
			info.VersionedResourcesStorageMap[r.gv.Version] = map[string]rest.Storage{}
			groups[r.gv.Group] = info
			order = append(order, r.gv.Group)
		}
		endpoints, err := r.storage(scheme, cfg.RESTOptionsGetter)
		if err != nil {
			return fmt.Errorf("%s: %w", r.plural, err)
		}
		for path, s := range endpoints {
			info.VersionedResourcesStorageMap[r.gv.Version][path] = s
		}
	}
	if err := server.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, groups[""]); err != nil {
		return fmt.Errorf("installing core/v1: %w", err)
	}
	for _, g := range order[1:] {
		if err := server.InstallAPIGroup(groups[g]); err != nil {
			return fmt.Errorf("installing %s: %w", g, err)
		}
	}
	return server.PrepareRun().RunWithContext(genericapiserver.SetupSignalContext())
}
