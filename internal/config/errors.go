package config

import (
	"encoding"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// FieldError is one rejected setting. Match it with errors.As on the error
// Load returns.
type FieldError struct {
	Var     string // the EM340_* variable
	Value   string // as given or defaulted; empty for secrets, user:password@ redacted
	Allowed string // what the variable accepts
	Err     error  // what is wrong with Value
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Var)
	if e.Value != "" {
		fmt.Fprintf(&b, "=%q", e.Value)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Allowed != "" {
		fmt.Fprintf(&b, "; allowed: %s", e.Allowed)
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// checker collects FieldErrors, at most one per variable: a second complaint
// about the same value (or one caused by its zero value after a parse
// failure) would only be noise.
type checker struct {
	env    map[string]string
	vars   map[string]Variable
	failed map[string]bool
	errs   []*FieldError
}

func newChecker(environ map[string]string) *checker {
	k := &checker{env: environ, vars: map[string]Variable{}, failed: map[string]bool{}}
	for _, v := range Variables() {
		k.vars[v.Name] = v
	}
	return k
}

// ok reports whether name has passed so far; cross-variable checks use it
// so they don't compare against a value that is already known to be wrong.
func (k *checker) ok(name string) bool { return !k.failed[name] }

func (k *checker) check(name string, ok bool, problem string) {
	if !ok {
		k.fail(name, errors.New(problem))
	}
}

func (k *checker) fail(name string, err error) {
	if k.failed[name] {
		return
	}
	k.failed[name] = true
	v := k.vars[name]
	k.errs = append(k.errs, &FieldError{Var: name, Value: k.value(v), Allowed: v.Allowed, Err: err})
}

// sorted returns the errors in declaration order, the order a reader of the
// docs expects, rather than the order the checks happen to run in.
func (k *checker) sorted() []error {
	order := map[string]int{}
	for i, v := range Variables() {
		order[v.Name] = i
	}
	slices.SortStableFunc(k.errs, func(a, b *FieldError) int { return order[a.Var] - order[b.Var] })
	errs := make([]error, len(k.errs))
	for i, e := range k.errs {
		errs[i] = e
	}
	return errs
}

// value is what the user gave for v (or its default), safe to show.
func (k *checker) value(v Variable) string {
	if v.Secret {
		return ""
	}
	s := k.env[v.Name]
	if s == "" {
		s = v.Default
	}
	return redactURL(s)
}

// redactURL hides a password in a URL-shaped value, and the whole value if
// it looks like it has one but does not parse.
func redactURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil && strings.Contains(s, "@"):
		return "[redacted]"
	case err == nil && u.User != nil:
		return u.Redacted()
	}
	return s
}

// parseFailures turns env's per-field parse errors into FieldErrors; any
// other error means the Config declaration itself is broken and is returned.
func (k *checker) parseFailures(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var broken []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			broken = append(broken, e)
			continue
		}
		sf, _ := reflect.TypeFor[Config]().FieldByName(pe.Name)
		k.fail(varName(sf), notA(sf.Type, pe.Err))
	}
	return errors.Join(broken...)
}

// notA says which kind of value was expected, keeping strconv's sentinel
// (ErrSyntax, ErrRange) for errors.Is; the library's own text only repeats
// the value.
func notA(t reflect.Type, err error) error {
	if reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return err // a type of ours: its error says what is wrong
	}
	what := "not a whole number"
	switch {
	case t == reflect.TypeFor[time.Duration]():
		what = "not a duration (e.g. 500ms, 5s, 2m)"
	case t.Kind() == reflect.Bool:
		what = "not true or false"
	case t.Kind() == reflect.Float64:
		what = "not a number"
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return fmt.Errorf("%s: %w", what, ne.Err)
	}
	return errors.New(what)
}
