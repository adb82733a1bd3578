//! Per-thread outboxes: operations bound for one shard, collected on the calling thread until
//! one message carries them all.
//!
//! Each calling thread (an HTTP worker) has its own outbox per shard, in a `ThreadLocal`, so
//! pushing takes no lock. The first push after the outbox was emptied tells the caller to
//! schedule the send (a task spawned on the same event loop); that task runs after the other
//! requests already woken in this turn of the loop, takes everything pushed meanwhile, and sends
//! it as one message. A busy worker thus sends one message for many requests, and an idle one
//! a message of one at once, with no timer.

use std::cell::RefCell;

use thread_local::ThreadLocal;

pub(super) struct Outboxes<T: Send> {
    shards: usize,
    per_thread: ThreadLocal<RefCell<Vec<Vec<T>>>>,
}

impl<T: Send> Outboxes<T> {
    pub(super) fn new(shards: usize) -> Self {
        Self {
            shards,
            per_thread: ThreadLocal::new(),
        }
    }

    /// Adds `item` to this thread's outbox for `shard`. Returns `true` if the outbox was empty:
    /// the caller must then schedule a [`take`](Self::take) and send on this thread.
    pub(super) fn push(&self, shard: usize, item: T) -> bool {
        let outbox = self
            .per_thread
            .get_or(|| RefCell::new((0..self.shards).map(|_| Vec::new()).collect()));
        let mut outbox = outbox.borrow_mut();
        outbox[shard].push(item);
        outbox[shard].len() == 1
    }

    /// Empties this thread's outbox for `shard`.
    pub(super) fn take(&self, shard: usize) -> Vec<T> {
        self.per_thread
            .get()
            .map(|outbox| std::mem::take(&mut outbox.borrow_mut()[shard]))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_push_after_a_take_asks_for_a_send() {
        let o = Outboxes::new(2);
        assert!(o.push(1, 'a'));
        assert!(!o.push(1, 'b'), "a send is already scheduled");
        assert!(o.push(0, 'x'), "each shard has its own outbox");
        assert_eq!(o.take(1), vec!['a', 'b']);
        assert!(o.take(1).is_empty());
        assert!(o.push(1, 'c'));
        let other = std::thread::scope(|s| s.spawn(|| (o.push(1, 'z'), o.take(1))).join().unwrap());
        assert_eq!(other, (true, vec!['z']), "another thread has its own outboxes");
        assert_eq!(o.take(1), vec!['c']);
    }
}
