package mask

// grain is how much budget a body reserves at a time.
const grain = 256 << 10

// reservation is what one body holds of an Engine's Budget.
type reservation struct {
	b    Budget
	held int64
}

// cover makes the reservation at least need bytes, growing it by a grain
// at least; false means the budget had no room in time. Without a budget
// everything fits.
func (r *reservation) cover(need int64) bool {
	if r.b == nil || need <= r.held {
		return true
	}
	grow := max(need-r.held, grain)
	if !r.b.Reserve(grow) {
		return false
	}
	r.held += grow
	return true
}

// release gives everything back; it is safe to call again.
func (r *reservation) release() {
	if r.held > 0 {
		r.b.Release(r.held)
		r.held = 0
	}
}
