package proxy

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/crewgate/crewgate/internal/mask"
	"golang.org/x/sync/semaphore"
)

// bodyBudget is mask.memory as the maskers see it: the same semaphore the
// request bodies rules read are held against, so one total bounds them
// all. A response waits for room as long as a request body does.
type bodyBudget struct{ sem *semaphore.Weighted }

func (b bodyBudget) Reserve(n int64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), bodyWait)
	defer cancel()
	return b.sem.Acquire(ctx, n) == nil
}

func (b bodyBudget) Release(n int64) { b.sem.Release(n) }

// literals are the credential values crewgate has injected in this session.
// Every masker masks all of them, whatever its detectors, so an upstream that
// echoes a credential back never hands it to the crew.
type literals struct {
	mu      sync.Mutex
	vals    []mask.Literal
	version atomic.Int64 // bumped on every new value; read without the lock
}

func newLiterals() *literals { return &literals{} }

// add records value.
func (l *literals) add(value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.ContainsFunc(l.vals, func(x mask.Literal) bool { return x.Value == value }) {
		return
	}
	l.vals = append(l.vals, mask.Literal{Name: "credential", Value: value})
	l.version.Add(1)
}

func (l *literals) snapshot() ([]mask.Literal, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.vals), l.version.Load()
}

// maskers builds a mask.Engine for one configuration and rebuilds it when a
// new credential value has been injected.
type maskers struct {
	cfg  mask.Config
	lits *literals

	mu  sync.Mutex
	eng *mask.Engine
	ver int64
}

func newMaskers(cfg mask.Config, lits *literals) (*maskers, error) {
	m := &maskers{cfg: cfg, lits: lits, ver: -1}
	_, err := m.engine()
	return m, err
}

func (m *maskers) engine() (*mask.Engine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.eng != nil && m.ver == m.lits.version.Load() {
		return m.eng, nil // the common case: nothing new was injected
	}
	vals, ver := m.lits.snapshot()
	cfg := m.cfg
	cfg.Literals = append(slices.Clone(cfg.Literals), vals...)
	eng, err := mask.New(cfg)
	if err != nil {
		return nil, err
	}
	m.eng, m.ver = eng, ver
	return eng, nil
}
