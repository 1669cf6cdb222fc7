//! Open message files left where the last chunk ended, so a message read in chunks (POP3 RETR,
//! IMAP FETCH BODY[]) is read once, not once per chunk: the filesystem trait has streams, no
//! seeks, and skipping to the offset each time made a 50 MB message cost gigabytes of reading.

use crate::index::FolderIndex;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Readers kept at once; the oldest goes first.
const MAX_READERS: usize = 32;

/// Most folders whose message locations are remembered (see [`ReadCache::set_locations`]).
const MAX_LOCATED_FOLDERS: usize = 16;

/// Where a message's file was at the folder's last sync, and its CRLF size.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// `new` or `cur`.
    pub(crate) subdir: &'static str,
    /// The file name.
    pub(crate) name: String,
    /// Size with CRLF line ends.
    pub(crate) size: u64,
}

/// A reader positioned at `offset` of the message `key` names.
struct Positioned {
    key: String,
    offset: u64,
    reader: Box<dyn Read + Send>,
}

/// The cache (see the module docs). A miss costs nothing but the skip it always cost.
#[derive(Default)]
pub(crate) struct ReadCache {
    readers: Mutex<Vec<Positioned>>,
    /// Per folder directory: the index of the last sync, so reading a message does not sync
    /// the whole folder again (a FETCH of N bodies would cost N folder scans).
    locations: Mutex<HashMap<PathBuf, Arc<FolderIndex>>>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").finish_non_exhaustive()
    }
}

impl ReadCache {
    /// Remembers where the messages of `dir` are, after a sync.
    pub(crate) fn set_locations(&self, dir: &Path, index: Arc<FolderIndex>) {
        let mut all = self
            .locations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if all.len() >= MAX_LOCATED_FOLDERS && !all.contains_key(dir) {
            all.clear();
        }
        all.insert(dir.to_path_buf(), index);
    }

    /// Where message `uid` of `dir` was at the last sync (it may have been renamed or removed
    /// since: the caller falls back to a sync when the file is not there).
    pub(crate) fn location(&self, dir: &Path, uid: u32) -> Option<Located> {
        let index = self
            .locations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dir)?
            .clone();
        let i = index.messages.binary_search_by_key(&uid, |m| m.uid).ok()?;
        let m = &index.messages[i];
        Some(Located {
            subdir: m.subdir,
            name: m.name.clone(),
            size: m.size,
        })
    }

    /// The reader of `key` if one stopped exactly at `offset`.
    pub(crate) fn take(&self, key: &str, offset: u64) -> Option<Box<dyn Read + Send>> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        let i = readers
            .iter()
            .position(|p| p.key == key && p.offset == offset)?;
        Some(readers.remove(i).reader)
    }

    /// Keeps `reader`, now at `offset` of `key`, for the next chunk.
    pub(crate) fn put(&self, key: String, offset: u64, reader: Box<dyn Read + Send>) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        readers.retain(|p| p.key != key);
        if readers.len() >= MAX_READERS {
            readers.remove(0);
        }
        readers.push(Positioned {
            key,
            offset,
            reader,
        });
    }
}

/// Reads up to `max` bytes of `key` from `offset`: from the cached reader when one stopped
/// there, else from `open()` skipped to `offset`; an unfinished reader is kept for the next
/// chunk.
pub(crate) fn read_chunk(
    cache: &ReadCache,
    key: &str,
    offset: u64,
    max: usize,
    open: impl FnOnce() -> std::io::Result<Box<dyn Read + Send>>,
) -> std::io::Result<Vec<u8>> {
    let mut reader = match cache.take(key, offset) {
        Some(r) => r,
        None => {
            let mut r = open()?;
            std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())?;
            r
        }
    };
    let mut buf = Vec::with_capacity(max.min(1 << 20));
    (&mut reader).take(max as u64).read_to_end(&mut buf)?;
    if !buf.is_empty() && buf.len() == max {
        cache.put(key.to_string(), offset + buf.len() as u64, reader);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn chunks_continue_where_they_stopped_and_misses_reopen() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let cache = ReadCache::default();
        let opens = AtomicUsize::new(0);
        let open = || {
            opens.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(Cursor::new(data.clone())) as Box<dyn Read + Send>)
        };
        let mut got = Vec::new();
        let mut offset = 0u64;
        loop {
            let chunk = read_chunk(&cache, "m1", offset, 1000, open).unwrap();
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            got.extend(chunk);
        }
        assert_eq!(got, data);
        assert_eq!(
            opens.load(Ordering::Relaxed),
            1,
            "one open for the whole message"
        );
        // A read elsewhere (a retry from the start) opens again and is right.
        let again = read_chunk(&cache, "m1", 500, 10, open).unwrap();
        assert_eq!(again, &data[500..510]);
        // Another key never gets this reader.
        assert!(cache.take("m2", 510).is_none());
    }
}
