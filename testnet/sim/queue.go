package sim

import "container/heap"

// event is something that happens at a simulated instant. seq breaks ties so that equal times
// still run in one deterministic order.
type event struct {
	at  int64
	seq uint64
	run func()
}

type eventQueue struct {
	items []*event
	seq   uint64
}

func (q *eventQueue) Len() int { return len(q.items) }
func (q *eventQueue) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	return a.at < b.at || (a.at == b.at && a.seq < b.seq)
}
func (q *eventQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *eventQueue) Push(x any)    { q.items = append(q.items, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := q.items
	e := old[len(old)-1]
	old[len(old)-1] = nil
	q.items = old[:len(old)-1]
	return e
}

func (q *eventQueue) schedule(at int64, run func()) {
	q.seq++
	heap.Push(q, &event{at: at, seq: q.seq, run: run})
}

func (q *eventQueue) next() *event { return heap.Pop(q).(*event) }
