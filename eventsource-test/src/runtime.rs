//! Running a future to completion from synchronous test code, in or out of a runtime.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime, RuntimeFlavor};

/// Runs `future` to completion and returns its output, wherever it is called from:
///
/// - outside any runtime (a plain `#[test]`): on a fresh current-thread tokio runtime;
/// - inside a multi-threaded tokio runtime: on that runtime, by moving the current worker
///   aside ([`tokio::task::block_in_place`]), so the future can use the test's resources;
/// - inside a current-thread runtime (`#[tokio::test]`'s default): on a helper thread
///   with its own runtime, as that runtime's only thread cannot be blocked.
///
/// It never starts a runtime inside another one, so it does not hit tokio's
/// "cannot start a runtime from within a runtime" panic. A panic of the future is
/// resumed on the calling thread.
///
/// ```
/// let answer = eventsource_test::block_on(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// ```
///
/// # Panics
/// If the operating system refuses to create a runtime (out of threads or file
/// descriptors), with the reason.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match Handle::try_current() {
        Err(_) => fresh_runtime().block_on(future),
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        Ok(_) => std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("eventsource-test block_on".to_owned())
                .spawn_scoped(scope, || fresh_runtime().block_on(future));
            match worker {
                Ok(worker) => match worker.join() {
                    Ok(output) => output,
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(error) => panic!("block_on could not start a helper thread: {error}"),
            }
        }),
    }
}

fn fresh_runtime() -> Runtime {
    match Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("block_on could not create a tokio runtime: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::block_on;

    async fn later() -> u32 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        7
    }

    #[test]
    fn outside_a_runtime() {
        assert_eq!(block_on(later()), 7);
    }

    #[tokio::test]
    async fn inside_a_current_thread_runtime() {
        assert_eq!(block_on(later()), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inside_a_multi_thread_runtime() {
        assert_eq!(block_on(later()), 7);
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let result = std::panic::catch_unwind(|| {
            block_on(async { panic!("boom") });
        });
        assert!(result.is_err());
    }
}
