package main

// Server-side tables (what `kubectl get` prints): the columns of kube-apiserver's printers, computed
// here from the v1 types. Like kube-apiserver's, the server always fills the wide columns
// (priority 1); kubectl shows them with -o wide. Values are shown as stored (no defaulting).

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// table is a rest.TableConvertor: columns and one row of cells per object.
type table struct {
	columns []metav1.TableColumnDefinition
	cells   func(obj runtime.Object) []interface{}
}

// cols makes column definitions from "Title: description" specs; a title ending in "*" is a wide
// (priority 1) column, "Name" is the name column, and the Count and Data columns are integers.
func cols(specs ...string) []metav1.TableColumnDefinition {
	var out []metav1.TableColumnDefinition
	for _, s := range specs {
		title, desc, _ := strings.Cut(s, ": ")
		c := metav1.TableColumnDefinition{Name: strings.TrimSuffix(title, "*"), Type: "string", Description: desc}
		if title != c.Name {
			c.Priority = 1
		}
		switch c.Name {
		case "Name":
			c.Format, c.Description = "name", "Name of the object (metadata.name)."
		case "Age":
			c.Description = "Time since the object was created (metadata.creationTimestamp)."
		case "Count", "Data":
			c.Type = "integer"
		}
		out = append(out, c)
	}
	return out
}

func (t *table) ConvertToTable(_ context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	tbl := &metav1.Table{Rows: []metav1.TableRow{}}
	row := func(o runtime.Object) error {
		tbl.Rows = append(tbl.Rows, metav1.TableRow{Cells: t.cells(o), Object: runtime.RawExtension{Object: o}})
		return nil
	}
	if meta.IsListType(obj) {
		if err := meta.EachListItem(obj, row); err != nil {
			return nil, err
		}
		if l, err := meta.ListAccessor(obj); err == nil {
			tbl.ResourceVersion, tbl.Continue, tbl.RemainingItemCount = l.GetResourceVersion(), l.GetContinue(), l.GetRemainingItemCount()
		}
	} else {
		_ = row(obj)
		if m, err := meta.Accessor(obj); err == nil {
			tbl.ResourceVersion = m.GetResourceVersion()
		}
	}
	if o, ok := opts.(*metav1.TableOptions); !ok || !o.NoHeaders {
		tbl.ColumnDefinitions = t.columns
	}
	return tbl, nil
}

// age is the printers' AGE: a short duration since t, "<unknown>" for a zero time.
func age(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t))
}

func or(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

// capped joins the first 3 items with "," and says how many more there are; empty gives dflt.
func capped(items []string, dflt string) string {
	if len(items) > 3 {
		return fmt.Sprintf("%s + %d more...", strings.Join(items[:3], ","), len(items)-3)
	}
	return or(strings.Join(items, ","), dflt)
}

// lbAddresses: the distinct IPs (or hostnames) of load-balancer ingress points, sorted.
func lbAddresses(ips, hostnames []string) string {
	set := map[string]bool{}
	for i := range ips {
		if a := or(ips[i], hostnames[i]); a != "" {
			set[a] = true
		}
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

var tableIngress = &table{
	cols("Name", "Class: spec.ingressClassName.", "Hosts: Hosts of the rules.", "Address: Load-balancer IPs or hostnames (status).",
		"Ports: Ports the ingress is served on.", "Age"),
	func(obj runtime.Object) []interface{} {
		ing := obj.(*networkingv1.Ingress)
		class := "<none>"
		if ing.Spec.IngressClassName != nil {
			class = *ing.Spec.IngressClassName
		}
		var hosts, ips, names []string
		for _, r := range ing.Spec.Rules {
			if r.Host != "" {
				hosts = append(hosts, r.Host)
			}
		}
		for _, lb := range ing.Status.LoadBalancer.Ingress {
			ips, names = append(ips, lb.IP), append(names, lb.Hostname)
		}
		ports := "80"
		if len(ing.Spec.TLS) > 0 {
			ports = "80, 443"
		}
		return []interface{}{ing.Name, class, capped(hosts, "*"), lbAddresses(ips, names), ports, age(ing.CreationTimestamp.Time)}
	},
}

var tableService = &table{
	cols("Name", "Type: spec.type.", "Cluster-IP: spec.clusterIP.", "External-IP: External or load-balancer addresses.",
		"Port(s): Service ports (port[:nodePort]/protocol).", "Age", "Selector*: spec.selector."),
	func(obj runtime.Object) []interface{} {
		svc := obj.(*corev1.Service)
		clusterIP := or(svc.Spec.ClusterIP, "<none>")
		if len(svc.Spec.ClusterIPs) > 0 {
			clusterIP = svc.Spec.ClusterIPs[0]
		}
		external := strings.Join(svc.Spec.ExternalIPs, ",")
		switch svc.Spec.Type {
		case corev1.ServiceTypeExternalName:
			external = svc.Spec.ExternalName
		case corev1.ServiceTypeLoadBalancer:
			var ips, names []string
			for _, lb := range svc.Status.LoadBalancer.Ingress {
				ips, names = append(ips, lb.IP), append(names, lb.Hostname)
			}
			lb := lbAddresses(ips, names)
			if lb != "" && external != "" {
				lb += ","
			}
			external = or(lb+external, "<pending>")
		}
		var ports []string
		for _, p := range svc.Spec.Ports {
			s := strconv.Itoa(int(p.Port))
			if p.NodePort != 0 {
				s += ":" + strconv.Itoa(int(p.NodePort))
			}
			ports = append(ports, s+"/"+string(p.Protocol))
		}
		selector := "<none>"
		if len(svc.Spec.Selector) > 0 {
			selector = labels.FormatLabels(svc.Spec.Selector)
		}
		return []interface{}{svc.Name, string(svc.Spec.Type), clusterIP, or(external, "<none>"),
			or(strings.Join(ports, ","), "<none>"), age(svc.CreationTimestamp.Time), selector}
	},
}

// event is what the Event table shows, common to core/v1 and events.k8s.io/v1 Events.
type event struct {
	name, typ, reason, message, subobject, source string
	kind, object                                  string
	first, last, eventTime                        time.Time
	series                                        *eventsv1.EventSeries
	count                                         int32
}

var tableEvent = &table{
	cols("Last Seen: Time since the event was last seen.", "Type: Normal or Warning.", "Reason: Short reason.",
		"Object: The object the event is about.", "Subobject*: Field path in the object.", "Source*: Component that reported it.",
		"Message: Human-readable message.", "First Seen*: Time since the event was first seen.", "Count*: Times seen.", "Name*"),
	func(obj runtime.Object) []interface{} {
		var e event
		switch ev := obj.(type) {
		case *corev1.Event:
			src := strings.Join(nonEmpty(ev.Source.Component, ev.Source.Host), ", ")
			if src == "" {
				src = strings.Join(nonEmpty(ev.ReportingController, ev.ReportingInstance), ", ")
			}
			e = event{ev.Name, ev.Type, ev.Reason, ev.Message, ev.InvolvedObject.FieldPath, src, ev.InvolvedObject.Kind,
				ev.InvolvedObject.Name, ev.FirstTimestamp.Time, ev.LastTimestamp.Time, ev.EventTime.Time, nil, ev.Count}
			if ev.Series != nil {
				e.series = &eventsv1.EventSeries{Count: ev.Series.Count, LastObservedTime: ev.Series.LastObservedTime}
			}
		case *eventsv1.Event:
			src := strings.Join(nonEmpty(ev.DeprecatedSource.Component, ev.DeprecatedSource.Host), ", ")
			if src == "" {
				src = strings.Join(nonEmpty(ev.ReportingController, ev.ReportingInstance), ", ")
			}
			e = event{ev.Name, ev.Type, ev.Reason, ev.Note, ev.Regarding.FieldPath, src, ev.Regarding.Kind, ev.Regarding.Name,
				ev.DeprecatedFirstTimestamp.Time, ev.DeprecatedLastTimestamp.Time, ev.EventTime.Time, ev.Series, ev.DeprecatedCount}
		}
		if e.first.IsZero() {
			e.first = e.eventTime
		}
		if e.last.IsZero() {
			e.last = e.first
		}
		if e.series != nil {
			e.last, e.count = e.series.LastObservedTime.Time, e.series.Count
		} else if e.count == 0 {
			e.count = 1 // a singleton event of the events.k8s.io API
		}
		target := strings.ToLower(e.kind)
		if e.object != "" {
			target += "/" + e.object
		}
		return []interface{}{age(e.last), e.typ, e.reason, target, e.subobject, e.source, strings.TrimSpace(e.message),
			age(e.first), int64(e.count), e.name}
	},
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

var tableLease = &table{
	cols("Name", "Holder: spec.holderIdentity.", "Age"),
	func(obj runtime.Object) []interface{} {
		l := obj.(*coordinationv1.Lease)
		holder := ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		return []interface{}{l.Name, holder, age(l.CreationTimestamp.Time)}
	},
}

var tableEndpointSlice = &table{
	cols("Name", "AddressType: IPv4, IPv6 or FQDN.", "Ports: Port numbers (names if unset).", "Endpoints: Endpoint addresses.", "Age"),
	func(obj runtime.Object) []interface{} {
		es := obj.(*discoveryv1.EndpointSlice)
		var ports, addrs []string
		for _, p := range es.Ports {
			switch {
			case p.Port != nil:
				ports = append(ports, strconv.Itoa(int(*p.Port)))
			case p.Name != nil:
				ports = append(ports, *p.Name)
			default:
				ports = append(ports, "*")
			}
		}
		for _, ep := range es.Endpoints {
			addrs = append(addrs, ep.Addresses...)
		}
		return []interface{}{es.Name, string(es.AddressType), capped(ports, "<unset>"), capped(addrs, "<unset>"), age(es.CreationTimestamp.Time)}
	},
}

var tableNamespace = &table{
	cols("Name", "Status: status.phase.", "Age"),
	func(obj runtime.Object) []interface{} {
		ns := obj.(*corev1.Namespace)
		return []interface{}{ns.Name, string(ns.Status.Phase), age(ns.CreationTimestamp.Time)}
	},
}

var tableSecret = &table{
	cols("Name", "Type: type.", "Data: Number of keys.", "Age"),
	func(obj runtime.Object) []interface{} {
		s := obj.(*corev1.Secret)
		return []interface{}{s.Name, string(s.Type), int64(len(s.Data)), age(s.CreationTimestamp.Time)}
	},
}

var tableConfigMap = &table{
	cols("Name", "Data: Number of keys.", "Age"),
	func(obj runtime.Object) []interface{} {
		c := obj.(*corev1.ConfigMap)
		return []interface{}{c.Name, int64(len(c.Data) + len(c.BinaryData)), age(c.CreationTimestamp.Time)}
	},
}

var tableIngressClass = &table{
	cols("Name", "Controller: spec.controller.", "Parameters: spec.parameters.", "Age"),
	func(obj runtime.Object) []interface{} {
		c := obj.(*networkingv1.IngressClass)
		params := "<none>"
		if p := c.Spec.Parameters; p != nil {
			params = p.Kind
			if p.APIGroup != nil {
				params += "." + *p.APIGroup
			}
			params += "/" + p.Name
		}
		return []interface{}{c.Name, c.Spec.Controller, params, age(c.CreationTimestamp.Time)}
	},
}
