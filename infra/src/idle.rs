//! How the local event-source pollers wait between empty polls. Lambda's
//! pollers cost the account nothing while a queue or stream is empty; the
//! local ones cost a call to the emulator each time: an idle stack polling
//! every 200 ms kept a tenth of a core busy (half in the emulator, half in
//! the SDK calls), a sixth of the test machine with three stacks running.
//! So the wait grows from 200 ms to half a second while polls come back
//! empty, and ends early when the stack signals activity (an answered API
//! request, a batch a poller handed on: the moments something new may be
//! waiting), but never before 200 ms: under a stream of requests a poller
//! woken by each would poll more often than before, not less. Writes the
//! stack does not see (a test's own SDK call, a message back from its
//! visibility timeout) wait at most the half second.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const FIRST: Duration = Duration::from_millis(200);
const LONGEST: Duration = Duration::from_millis(500);

/// Signalled after anything that may have written: wakes every waiting poller.
#[derive(Clone)]
pub struct Activity(Arc<watch::Sender<()>>);

impl Activity {
    pub fn new() -> Activity {
        Activity(Arc::new(watch::channel(()).0))
    }

    pub fn signal(&self) {
        self.0.send_replace(());
    }

    pub fn idle(&self) -> Idle {
        Idle { activity: self.0.subscribe(), wait: FIRST }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// One poller's wait.
pub struct Idle {
    activity: watch::Receiver<()>,
    wait: Duration,
}

impl Idle {
    /// Called before each poll: activity from here on cuts the next wait
    /// short, so a write racing the poll is not left for a whole wait.
    pub fn polling(&mut self) {
        self.activity.borrow_and_update();
    }

    /// The poll found work: the next wait starts short again.
    pub fn busy(&mut self) {
        self.wait = FIRST;
    }

    /// The poll came back empty: waits 200 ms, then until activity or
    /// longer each time.
    pub async fn wait(&mut self) {
        let wait = self.wait;
        self.wait = (wait * 2).min(LONGEST);
        tokio::time::sleep(FIRST).await;
        let rest = wait - FIRST;
        if let Ok(Err(_)) = tokio::time::timeout(rest, self.activity.changed()).await {
            // The stack is gone: nothing will signal again.
            tokio::time::sleep(rest).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn empty_polls_wait_longer_each_time_up_to_half_a_second() {
        let activity = Activity::new();
        let mut idle = activity.idle();
        let mut waits = vec![];
        for _ in 0..5 {
            idle.polling();
            let started = Instant::now();
            idle.wait().await;
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(waits, [200, 400, 500, 500, 500]);
        idle.busy();
        let started = Instant::now();
        idle.wait().await;
        assert_eq!(started.elapsed().as_millis(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_ends_a_long_wait_but_polls_stay_200_ms_apart() {
        let activity = Activity::new();
        let mut idle = activity.idle();
        for _ in 0..4 {
            idle.polling();
            idle.wait().await;
        }
        // A write while the poll was out: the next poll after 200 ms.
        idle.polling();
        activity.signal();
        let started = Instant::now();
        idle.wait().await;
        assert_eq!(started.elapsed().as_millis(), 200);
        // A write during the wait ends it, at 200 ms at the soonest.
        for (signal_at, polled_at) in [(300, 300), (50, 200)] {
            idle.polling();
            let signal = activity.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(signal_at)).await;
                signal.signal();
            });
            let started = Instant::now();
            idle.wait().await;
            assert_eq!(started.elapsed().as_millis(), polled_at);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_poller_outliving_its_stack_still_waits() {
        let mut idle = Activity::new().idle();
        idle.polling();
        let started = Instant::now();
        idle.wait().await;
        assert_eq!(started.elapsed().as_millis(), 200);
    }
}
