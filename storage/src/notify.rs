//! A minimal single-threaded wake-all notification.

use std::cell::RefCell;
use std::task::Waker;

#[derive(Default)]
pub(crate) struct Notify {
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn register(&self, w: &Waker) {
        let mut ws = self.waiters.borrow_mut();
        if !ws.iter().any(|x| x.will_wake(w)) {
            ws.push(w.clone());
        }
    }

    pub fn wake_all(&self) {
        let ws = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in ws {
            w.wake();
        }
    }
}
