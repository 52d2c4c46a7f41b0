package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds how many YAML nodes one decode visits, counting every expansion of an alias, so that an
// "exponential laughs" document cannot make a config take forever or all memory. Real configs use a few hundred.
const maxNodes = 100_000

// strictDecoder fills a Go value from a yaml.Node tree, walking both together by reflection. Unlike
// yaml.Decoder.KnownFields it does not stop at the first problem: it records every unknown field, duplicate key
// and type error with its field path and line, and decodes everything else.
type strictDecoder struct {
	errs      Errors
	visited   int
	exhausted bool
	expanding map[*yaml.Node]bool // aliases being expanded, to catch an anchor that contains itself
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode fills v (settable) from n. path names v in error messages.
func (d *strictDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.visited++; d.visited > maxNodes {
		if !d.exhausted {
			d.exhausted = true
			d.errs.add(path, "line %d: document too large (more than %d values, counting expanded aliases)", n.Line, maxNodes)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || d.expanding[n] {
			d.errs.add(path, "line %d: anchor %q contains itself", n.Line, n.Value)
			return
		}
		d.expanding[n] = true
		defer delete(d.expanding, n)
		d.decode(n.Alias, v, path)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		v.SetZero()
		return
	}
	if v.Kind() == reflect.Pointer {
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p) // even when partly wrong, so validation can still report the rest of it
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.errs.add(path, "line %d: %v", n.Line, err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Map:
		d.mapValue(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.typeError(n, "a list", path)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode {
			d.typeError(n, v.Type().String(), path)
			return
		}
		p := reflect.New(v.Type())
		if err := n.Decode(p.Interface()); err != nil {
			d.typeError(n, v.Type().String(), path)
			return
		}
		v.Set(p.Elem())
	}
}

func (d *strictDecoder) typeError(n *yaml.Node, want, path string) {
	d.errs.add(path, "line %d: cannot unmarshal %s into %s", n.Line, describeNode(n), want)
}

// describeNode names a node's value for an error message.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	default:
		return "an alias"
	}
}

// keyValue is one entry of a mapping, after merge keys ("<<: *anchor") are expanded.
type keyValue struct {
	key, value *yaml.Node
}

// entries returns the key/value pairs of mapping n. Keys given in n win over merged ones, as in yaml.v3;
// a key given twice in n itself is an error.
func (d *strictDecoder) entries(n *yaml.Node, path string) []keyValue {
	var own, merged []keyValue
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errs.add(path, "line %d: a key must be a plain string, not %s", k.Line, describeNode(k))
			continue
		}
		if prev, ok := first[k.Value]; ok {
			d.errs.add(join(path, k.Value), "duplicate key (line %d; first at line %d)", k.Line, prev.Line)
			continue
		}
		first[k.Value] = k
		own = append(own, keyValue{k, v})
	}
	for _, kv := range merged {
		if _, ok := first[kv.key.Value]; !ok {
			first[kv.key.Value] = kv.key
			own = append(own, kv)
		}
	}
	return own
}

// mergeSources expands the value of a merge key: a mapping, or a list of mappings, usually aliases.
func (d *strictDecoder) mergeSources(v *yaml.Node, path string) []keyValue {
	if d.visited++; d.visited > maxNodes {
		return nil
	}
	switch v.Kind {
	case yaml.AliasNode:
		if v.Alias == nil || d.expanding[v] {
			d.errs.add(path, "line %d: anchor %q contains itself", v.Line, v.Value)
			return nil
		}
		d.expanding[v] = true
		defer delete(d.expanding, v)
		return d.mergeSources(v.Alias, path)
	case yaml.MappingNode:
		return d.entries(v, path)
	case yaml.SequenceNode:
		var all []keyValue
		for _, item := range v.Content {
			if item.Kind == yaml.SequenceNode {
				d.errs.add(path, "line %d: a merge key (<<) takes a mapping or a list of mappings", item.Line)
				continue
			}
			all = append(all, d.mergeSources(item, path)...)
		}
		return all
	}
	d.errs.add(path, "line %d: a merge key (<<) takes a mapping or a list of mappings", v.Line)
	return nil
}

func (d *strictDecoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a mapping", path)
		return
	}
	fields := yamlFields(v.Type())
	for _, kv := range d.entries(n, path) {
		p := join(path, kv.key.Value)
		i, ok := fields[kv.key.Value]
		if !ok {
			d.errs.add(p, "unknown field (line %d)", kv.key.Line)
			continue
		}
		d.decode(kv.value, v.Field(i), p)
	}
}

func (d *strictDecoder) mapValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a mapping", path)
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("config: only maps with string keys are supported") // a programming error in this package's types
	}
	m := reflect.MakeMap(v.Type())
	for _, kv := range d.entries(n, path) {
		if kv.key.ShortTag() == "!!null" {
			d.errs.add(path, "line %d: a key must be a plain string, not null", kv.key.Line)
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(kv.value, e, join(path, kv.key.Value))
		m.SetMapIndex(reflect.ValueOf(kv.key.Value).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var fieldCache sync.Map // reflect.Type → map[string]int

// yamlFields maps the YAML key of each field of struct type t to the field's index, following yaml.v3's rules:
// the name from the `yaml` tag, or the lowercased field name; "-" and unexported fields are skipped.
func yamlFields(t reflect.Type) map[string]int {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]int)
	}
	fields := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
	}
	fieldCache.Store(t, fields)
	return fields
}

// parseDocument parses data as a single YAML document. An empty document gives a nil node.
func parseDocument(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; a config file must never crash the agent.
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, cleanYAMLError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("line %d: a second YAML document; a config file holds exactly one (remove the extra \"---\")", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, cleanYAMLError(err)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

func cleanYAMLError(err error) error {
	return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
}
