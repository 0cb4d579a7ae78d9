//! Reading an emulator's serial output line by line, from a pipe or from a file it appends to. Shared by the
//! runner and the benchmark, which differ only in what they do with each line.

use crate::runner::LineSplitter;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Reads `r` until end of file, calling `on_line` for every line (an unterminated last line included), then
/// `on_end`.
pub fn spawn_line_reader<R: Read + Send + 'static>(
    mut r: R,
    mut on_line: impl FnMut(String) + Send + 'static,
    on_end: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => splitter.push(&buf[..n]).into_iter().for_each(&mut on_line),
            }
        }
        splitter.finish().into_iter().for_each(&mut on_line);
        on_end();
    })
}

/// Follows `path`, which the emulator appends to (it may not exist yet), polling every `poll`, until `stop` is
/// set; then reads the rest once more, calls `on_line` for what is left and `on_end`.
pub fn spawn_file_tail(
    path: PathBuf,
    poll: Duration,
    stop: Arc<AtomicBool>,
    mut on_line: impl FnMut(String) + Send + 'static,
    on_end: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut file: Option<std::fs::File> = None;
        let mut buf = vec![0u8; 16384];
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            if let Some(f) = file.as_mut() {
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    splitter.push(&buf[..n]).into_iter().for_each(&mut on_line);
                }
            }
            if stopping {
                break;
            }
            thread::sleep(poll);
        }
        splitter.finish().into_iter().for_each(&mut on_line);
        on_end();
    })
}

/// Reads `r` to the end into a string (lossy UTF-8): an emulator's own messages.
pub fn spawn_collector<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
