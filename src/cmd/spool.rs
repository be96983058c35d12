//! Validated messages kept aside (for `enqueue --jsonl`): the input is read and checked into the
//! spool first, so the database's write lock is held only for the inserts, never while a producer
//! is slow to send its lines. The first `IN_MEMORY` bytes stay in memory; past that the spool
//! moves to an unlinked temporary file, so a million lines take no more memory than a few
//! thousand.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::message::Message;

/// Messages (bodies, headers, URLs) kept in memory before the spool moves to a file: writing and
/// reading back a file costs a batch of a million 1 KiB messages about a fifth of its speed.
const IN_MEMORY: usize = 16 << 20;

/// Messages written, then read back in the same order.
pub(crate) struct Spool {
    memory: Vec<Message>,
    memory_bytes: usize,
    file: Option<BufWriter<File>>,
    what: String,
    len: u64,
}

/// Reads a [`Spool`] back: the messages kept in memory, then those in the file.
pub(crate) struct Replay {
    memory: std::vec::IntoIter<Message>,
    reader: Option<BufReader<File>>,
    left: u64,
}

impl Spool {
    /// An empty spool; `what` names its file if it needs one.
    pub(crate) fn new(what: &str) -> Spool {
        Spool {
            memory: Vec::new(),
            memory_bytes: 0,
            file: None,
            what: what.to_owned(),
            len: 0,
        }
    }

    /// A file in the temporary directory, already unlinked.
    fn create_file(what: &str) -> Result<BufWriter<File>> {
        let path = std::env::temp_dir().join(format!(
            "webhookd-{what}-{}-{}",
            std::process::id(),
            Uuid::now_v7().simple()
        ));
        let io = |source| Error::Write {
            what: format!("temporary file {}", path.display()),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        std::fs::remove_file(&path).map_err(io)?;
        Ok(BufWriter::with_capacity(256 * 1024, file))
    }

    /// Appends one message.
    ///
    /// # Errors
    /// `Write`.
    pub(crate) fn push(&mut self, m: Message) -> Result<()> {
        self.len += 1;
        if self.file.is_none() {
            let size = m.body.len()
                + m.url.len()
                + m.headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>()
                + 128;
            if self.memory_bytes + size <= IN_MEMORY {
                self.memory_bytes += size;
                self.memory.push(m);
                return Ok(());
            }
            self.file = Some(Spool::create_file(&self.what)?);
        }
        let w = self.file.as_mut().expect("created above");
        let r = (|| -> std::io::Result<()> {
            put_str(w, &m.method)?;
            put_str(w, &m.url)?;
            w.write_all(&(m.headers.len() as u32).to_le_bytes())?;
            for (n, v) in &m.headers {
                put_str(w, n)?;
                put_str(w, v)?;
            }
            put_bytes(w, &m.body)?;
            put_opt(w, m.key.as_deref())?;
            w.write_all(
                &u64::try_from(m.delay.as_millis())
                    .unwrap_or(u64::MAX)
                    .to_le_bytes(),
            )?;
            w.write_all(&m.max_attempts.unwrap_or(0).to_le_bytes())?;
            put_opt(w, m.endpoint.as_deref())?;
            put_opt(w, m.lane.as_deref())?;
            w.write_all(&[u8::from(m.lane_dead_blocks)])
        })();
        r.map_err(spool_error)
    }

    /// Messages pushed so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Starts reading from the first message.
    ///
    /// # Errors
    /// `Write`.
    pub(crate) fn replay(self) -> Result<Replay> {
        let in_file = self.len - self.memory.len() as u64;
        let reader = match self.file {
            None => None,
            Some(writer) => {
                let mut file = writer
                    .into_inner()
                    .map_err(|e| spool_error(e.into_error()))?;
                file.seek(SeekFrom::Start(0)).map_err(spool_error)?;
                Some(BufReader::with_capacity(256 * 1024, file))
            }
        };
        Ok(Replay {
            memory: self.memory.into_iter(),
            reader,
            left: in_file,
        })
    }
}

impl Iterator for Replay {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        if let Some(m) = self.memory.next() {
            return Some(Ok(m));
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self.reader.as_mut()?;
        let m = (|| -> std::io::Result<Message> {
            let method = get_str(r)?;
            let url = get_str(r)?;
            let n = get_u32(r)?;
            let mut headers = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                headers.push((get_str(r)?, get_str(r)?));
            }
            let body = get_bytes(r)?;
            let key = get_opt(r)?;
            let mut ms = [0u8; 8];
            r.read_exact(&mut ms)?;
            let max_attempts = Some(get_u32(r)?).filter(|n| *n > 0);
            let endpoint = get_opt(r)?;
            let lane = get_opt(r)?;
            let mut flag = [0u8; 1];
            r.read_exact(&mut flag)?;
            Ok(Message {
                method,
                url,
                headers,
                body,
                key,
                delay: Duration::from_millis(u64::from_le_bytes(ms)),
                max_attempts,
                endpoint,
                lane,
                lane_dead_blocks: flag[0] == 1,
                // JSON lines are messages, never events (`enqueue --event` takes one).
                event: None,
            })
        })();
        Some(m.map_err(spool_error))
    }
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(b)
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    put_bytes(w, s.as_bytes())
}

fn put_opt(w: &mut impl Write, s: Option<&str>) -> std::io::Result<()> {
    match s {
        None => w.write_all(&[0]),
        Some(s) => {
            w.write_all(&[1])?;
            put_str(w, s)
        }
    }
}

fn get_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn get_bytes(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let n = get_u32(r)? as usize;
    let mut b = vec![0; n];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn get_str(r: &mut impl Read) -> std::io::Result<String> {
    String::from_utf8(get_bytes(r)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn get_opt(r: &mut impl Read) -> std::io::Result<Option<String>> {
    let mut flag = [0u8; 1];
    r.read_exact(&mut flag)?;
    match flag[0] {
        0 => Ok(None),
        _ => get_str(r).map(Some),
    }
}

fn spool_error(source: std::io::Error) -> Error {
    Error::Write {
        what: "temporary spool file".into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_as_they_went_in() -> Result<()> {
        let a = Message {
            method: "PUT".into(),
            url: "http://127.0.0.1:1/a".into(),
            headers: vec![("X-A".into(), "1".into()), ("X-A".into(), "2".into())],
            body: vec![0, 255, 1],
            key: Some("k".into()),
            delay: Duration::from_millis(1500),
            max_attempts: Some(3),
            endpoint: Some("e".into()),
            lane: Some("e\u{1f}k".into()),
            lane_dead_blocks: true,
            event: None,
        };
        let b = Message::default();
        let mut spool = Spool::new("test");
        spool.push(a.clone())?;
        spool.push(b.clone())?;
        assert!(spool.file.is_none(), "small: in memory");
        let big = Message {
            body: vec![7; IN_MEMORY],
            ..Message::default()
        };
        spool.push(big.clone())?;
        spool.push(a.clone())?;
        assert!(spool.file.is_some(), "past IN_MEMORY: a file");
        assert_eq!(spool.len(), 4);
        let back: Vec<Message> = spool.replay()?.collect::<Result<_>>()?;
        assert_eq!(back, vec![a.clone(), b, big, a]);
        Ok(())
    }
}
