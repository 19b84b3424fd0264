package main

// OpenAPI definitions for every type in the scheme, derived at start-up from the Go types by
// reflection (k8s.io/api ships no generated definitions). They drive the OpenAPI documents that
// kubectl reads and the type converter behind server-side apply: struct fields become properties,
// `patchStrategy`/`patchMergeKey` tags become the extensions that make a list associative, and
// types with custom JSON (times, int-or-string, raw extensions) get the schema of their wire form.

import (
	"encoding/json"
	"reflect"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	openapicommon "k8s.io/kube-openapi/pkg/common"
	openapiutil "k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Types that routes mention but that no scheme registers under a kind.
var extraOpenAPIRoots = []any{&metav1.Patch{}, &metav1.WatchEvent{}, &metav1.Status{}, &metav1.DeleteOptions{}, &version.Info{}}

func openAPIDefinitions(scheme *runtime.Scheme) openapicommon.GetOpenAPIDefinitions {
	return func(ref openapicommon.ReferenceCallback) map[string]openapicommon.OpenAPIDefinition {
		g := &defGen{ref: ref, defs: map[string]openapicommon.OpenAPIDefinition{}}
		for _, t := range scheme.AllKnownTypes() {
			g.schemaOf(t, nil)
		}
		for _, o := range extraOpenAPIRoots {
			g.schemaOf(reflect.TypeOf(o).Elem(), nil)
		}
		return g.defs
	}
}

type defGen struct {
	ref  openapicommon.ReferenceCallback
	defs map[string]openapicommon.OpenAPIDefinition
}

var (
	jsonMarshaler = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	schemaTyper   = reflect.TypeOf((*interface{ OpenAPISchemaType() []string })(nil)).Elem()
	rawExtension  = reflect.TypeOf(runtime.RawExtension{})
	fieldsV1      = reflect.TypeOf(metav1.FieldsV1{})
)

func preserveUnknown(typ ...string) spec.Schema {
	s := spec.Schema{SchemaProps: spec.SchemaProps{Type: typ}}
	s.AddExtension("x-kubernetes-preserve-unknown-fields", true)
	return s
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

// schemaOf returns the schema of a value of type t, defining named structs on the way and
// recording their names in deps.
func (g *defGen) schemaOf(t reflect.Type, deps map[string]bool) spec.Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case implements(t, schemaTyper):
		v := reflect.New(t).Interface()
		if oneOf, ok := v.(interface{ OpenAPIV3OneOfTypes() []string }); ok && len(oneOf.OpenAPIV3OneOfTypes()) > 1 {
			s := spec.Schema{}
			s.AddExtension("x-kubernetes-int-or-string", true)
			return s
		}
		s := spec.Schema{SchemaProps: spec.SchemaProps{Type: v.(interface{ OpenAPISchemaType() []string }).OpenAPISchemaType()}}
		if f, ok := v.(interface{ OpenAPISchemaFormat() string }); ok {
			s.Format = f.OpenAPISchemaFormat()
		}
		return s
	case t == rawExtension || t == fieldsV1:
		return preserveUnknown("object")
	case t.Kind() == reflect.Interface || implements(t, jsonMarshaler):
		return preserveUnknown()
	}
	switch t.Kind() {
	case reflect.Bool:
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"boolean"}}}
	case reflect.String:
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"string"}}}
	case reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16, reflect.Int8, reflect.Uint8:
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"integer"}, Format: "int32"}}
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"integer"}, Format: "int64"}}
	case reflect.Float32, reflect.Float64:
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"number"}, Format: "double"}}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"string"}, Format: "byte"}}
		}
		items := g.schemaOf(t.Elem(), deps)
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"array"}, Items: &spec.SchemaOrArray{Schema: &items}}}
	case reflect.Map:
		v := g.schemaOf(t.Elem(), deps)
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"object"}, AdditionalProperties: &spec.SchemaOrBool{Allows: true, Schema: &v}}}
	case reflect.Struct:
		if t.Name() == "" {
			return g.structSchema(t, deps)
		}
		name := openapiutil.GetCanonicalTypeName(reflect.New(t).Interface())
		if _, done := g.defs[name]; !done {
			g.defs[name] = openapicommon.OpenAPIDefinition{} // placeholder against cycles
			own := map[string]bool{}
			s := g.structSchema(t, own)
			def := openapicommon.OpenAPIDefinition{Schema: s}
			for d := range own {
				def.Dependencies = append(def.Dependencies, d)
			}
			g.defs[name] = def
		}
		if deps != nil {
			deps[name] = true
		}
		r := g.ref(name)
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: r}}
	}
	return preserveUnknown()
}

func (g *defGen) structSchema(t reflect.Type, deps map[string]bool) spec.Schema {
	s := spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"object"}, Properties: map[string]spec.Schema{}}}
	g.addFields(&s, t, deps)
	if len(s.Properties) == 0 {
		s.Properties = nil
	}
	return s
}

func (g *defGen) addFields(s *spec.Schema, t reflect.Type, deps map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") || (f.Anonymous && name == "") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.addFields(s, ft, deps)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs := g.schemaOf(f.Type, deps)
		if v := f.Tag.Get("patchStrategy"); v != "" {
			fs.AddExtension("x-kubernetes-patch-strategy", v)
		}
		if v := f.Tag.Get("patchMergeKey"); v != "" {
			fs.AddExtension("x-kubernetes-patch-merge-key", v)
		}
		if fs.Ref.String() != "" && len(fs.Extensions) > 0 { // $ref admits no siblings
			fs = spec.Schema{SchemaProps: spec.SchemaProps{AllOf: []spec.Schema{{SchemaProps: spec.SchemaProps{Ref: fs.Ref}}}}, VendorExtensible: fs.VendorExtensible}
		}
		s.Properties[name] = fs
	}
}
