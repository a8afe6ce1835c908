//! Runs plugin code on its own thread so that panics and hangs become failures.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a new thread; a panic or not finishing within `timeout` is an `Err` that says
/// so. A thread that hangs is left behind.
pub(crate) fn guarded<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("conformance-check".into())
        .spawn(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        })
        .map_err(|e| format!("starting a thread: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => {
            let _ = handle.join();
            result.map_err(|payload| format!("panicked: {}", panic_message(payload.as_ref())))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "did not finish within {} s (hang?)",
            timeout.as_secs_f64()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the check thread died".into()),
    }
}

/// Runs `f`, turning a panic into an `Err` with its message.
pub(crate) fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|payload| format!("panicked: {}", panic_message(payload.as_ref())))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_values_panics_and_hangs() {
        assert_eq!(guarded(Duration::from_secs(5), || 7), Ok(7));
        let err = guarded(Duration::from_secs(5), || -> u8 { panic!("boom") }).unwrap_err();
        assert!(err.contains("panicked: boom"), "{err}");
        let err = guarded(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(500))
        })
        .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(no_panic(|| -> u8 { panic!("{}", 3) })
            .unwrap_err()
            .contains('3'));
    }
}
