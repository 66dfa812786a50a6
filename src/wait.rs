//! Waiting for a condition that nothing announces: a post reaching a state seen through
//! the HTTP API, a server coming up, a database being let go. The demo, the examples and
//! the tests all wait this one way. Where something *is* announced (an event on the
//! store's feed, a channel), await that instead.
//!
//! Time is tokio's, so a test under `tokio::time::pause` waits in virtual time.

use std::time::Duration;

/// Runs `check` at once and then every `every` until it gives `Some`, and returns that;
/// `None` once `within` has passed (after one last check at the deadline, so a condition
/// that holds just in time is not missed).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// let mut tries = 0;
/// let third = social_studio::wait::poll_until(Duration::from_secs(5), Duration::from_millis(1), async || {
///     tries += 1;
///     (tries == 3).then_some(tries)
/// })
/// .await;
/// assert_eq!(third, Some(3));
/// # }
/// ```
pub async fn poll_until<T>(
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return Some(done);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(every.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_a_last_check_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let mut checks = Vec::new();
        let never: Option<()> = poll_until(
            Duration::from_secs(1),
            Duration::from_millis(300),
            async || {
                checks.push(started.elapsed());
                None
            },
        )
        .await;
        assert_eq!(never, None);
        let ms: Vec<u128> = checks.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 300, 600, 900, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_what_the_check_found_as_soon_as_it_holds() {
        let started = tokio::time::Instant::now();
        let mut n = 0;
        let found = poll_until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            async || {
                n += 1;
                (n == 4).then(|| started.elapsed())
            },
        )
        .await;
        assert_eq!(found, Some(Duration::from_millis(300)));
    }
}
