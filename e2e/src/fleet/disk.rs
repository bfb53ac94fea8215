//! When one file reaches new content on every simulated node: a single inotify instance
//! watches the file's directory under every host root, and each node is stamped the first
//! time its file holds the expected text after the measurement starts. A sweep every second
//! catches what an overflowing event queue may have dropped.

use notify::{RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::E2eError;

#[derive(Default)]
struct Shared {
    /// The text being waited for, and when the wait started.
    marker: Option<String>,
    seen: Vec<Option<Instant>>,
}

impl Shared {
    /// Stamps node `i` when its file holds the marker: at `event` (when the inotify event
    /// arrived), or else when the file was read, never before the write.
    fn check(&mut self, i: usize, file: &Path, event: Option<Instant>) {
        let Some(marker) = &self.marker else { return };
        if self.seen[i].is_none()
            && std::fs::read_to_string(file).is_ok_and(|text| text.contains(marker.as_str()))
        {
            self.seen[i] = Some(event.unwrap_or_else(Instant::now));
        }
    }
}

/// The watch over one file per node.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
    files: Arc<Vec<PathBuf>>,
    shared: Arc<Mutex<Shared>>,
}

impl FileWatch {
    /// Watches the directory of each of `files` (which must exist).
    pub fn start(files: Vec<PathBuf>) -> Result<FileWatch, E2eError> {
        let files = Arc::new(files);
        let shared = Arc::new(Mutex::new(Shared {
            marker: None,
            seen: vec![None; files.len()],
        }));
        let index: HashMap<PathBuf, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        let (cb_files, cb_shared) = (files.clone(), shared.clone());
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let now = Instant::now();
                let Ok(event) = event else { return };
                let Ok(mut shared) = cb_shared.lock() else {
                    return;
                };
                if event.need_rescan() {
                    for (i, f) in cb_files.iter().enumerate() {
                        shared.check(i, f, None);
                    }
                }
                for path in &event.paths {
                    if let Some(&i) = index.get(path) {
                        shared.check(i, path, Some(now));
                    }
                }
            })
            .map_err(|e| E2eError::Io(format!("inotify: {e}")))?;
        for file in files.iter() {
            let dir = file.parent().unwrap_or(file);
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| E2eError::Io(format!("watch {}: {e}", dir.display())))?;
        }
        Ok(FileWatch {
            _watcher: watcher,
            files,
            shared,
        })
    }

    /// Every node whose file holds `text` now.
    pub fn all_hold(&self, text: &str) -> usize {
        self.files
            .iter()
            .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(text)))
            .count()
    }

    /// Starts a measurement: from now on each node is stamped the first time its file holds
    /// `text`. Returns the start.
    pub fn arm(&self, text: &str) -> Instant {
        let start = Instant::now();
        if let Ok(mut shared) = self.shared.lock() {
            shared.marker = Some(text.to_string());
            shared.seen = vec![None; self.files.len()];
        }
        start
    }

    /// Waits until every node is stamped or `timeout` passes; each node's time since
    /// `start`, `None` for a node whose file never got there.
    pub async fn wait(&self, start: Instant, timeout: Duration) -> Vec<Option<Duration>> {
        let deadline = start + timeout;
        loop {
            let done = {
                let Ok(mut shared) = self.shared.lock() else {
                    return vec![None; self.files.len()];
                };
                for (i, f) in self.files.iter().enumerate() {
                    shared.check(i, f, None);
                }
                shared.seen.iter().all(Option::is_some)
            };
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.shared
            .lock()
            .map(|s| {
                s.seen
                    .iter()
                    .map(|t| t.map(|t| t.saturating_duration_since(start)))
                    .collect()
            })
            .unwrap_or_default()
    }
}
