//! The redis anchor of `realtime-small`: how fast a redis replica catches up
//! on writes it missed while paused. A small RESP client over std TcpStream.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Simple(s) | Reply::Error(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => String::new(),
            Reply::Array(Some(v)) => v.iter().map(|r| r.text()).collect::<Vec<_>>().join(" "),
        }
    }
}

pub struct Resp {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
}

impl Resp {
    pub fn connect(port: u16) -> io::Result<Resp> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Resp { r: BufReader::with_capacity(1 << 20, s.try_clone()?), w: BufWriter::with_capacity(1 << 20, s) })
    }

    /// Queues a command (not flushed).
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        write!(self.w, "*{}\r\n", args.len())?;
        for a in args {
            write!(self.w, "${}\r\n", a.len())?;
            self.w.write_all(a)?;
            self.w.write_all(b"\r\n")?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn read(&mut self) -> io::Result<Reply> {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line)?;
        if line.len() < 3 || !line.ends_with(b"\r\n") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short RESP line"));
        }
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        let num = || body.parse::<i64>().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad RESP number {body:?}")));
        Ok(match line[0] {
            b'+' => Reply::Simple(body.clone()),
            b'-' => Reply::Error(body.clone()),
            b':' => Reply::Int(num()?),
            b'$' => {
                let n = num()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    self.r.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            }
            b'*' => {
                let n = num()?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut v = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        v.push(self.read()?);
                    }
                    Reply::Array(Some(v))
                }
            }
            c => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown RESP type {:?}", c as char))),
        })
    }

    pub fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.send(&a)?;
        self.flush()?;
        match self.read()? {
            Reply::Error(e) => Err(io::Error::other(format!("redis {}: {e}", args.join(" ")))),
            r => Ok(r),
        }
    }

    /// `INFO section` as key → value.
    pub fn info(&mut self, section: &str) -> io::Result<Vec<(String, String)>> {
        let t = self.cmd(&["INFO", section])?.text();
        Ok(t.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect())
    }

    pub fn info_u64(&mut self, section: &str, key: &str) -> io::Result<Option<u64>> {
        Ok(self.info(section)?.into_iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok()))
    }
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child (it may be stopped).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_server(dir: &Path, name: &str, extra: &[String]) -> Result<Server, String> {
    let d: PathBuf = dir.join(name);
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    let port = free_port();
    let mut args: Vec<String> = [
        "--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
        "--protected-mode", "no", "--repl-timeout", "600", "--dir", &d.display().to_string(),
        "--logfile", &d.join("redis.log").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let child = Command::new("redis-server").args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| format!("starting redis-server: {e}"))?;
    let s = Server { child, port };
    let t = Instant::now();
    loop {
        if let Ok(mut c) = Resp::connect(port) {
            if c.cmd(&["PING"]).is_ok() {
                return Ok(s);
            }
        }
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!("redis-server {name} on port {port} did not answer PING within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct CatchUp {
    pub secs: f64,
    pub writes: usize,
    pub repl_bytes: u64,
}

impl CatchUp {
    pub fn per_sec(&self) -> f64 {
        self.writes as f64 / self.secs
    }
}

/// Primary and replica on loopback; the replica is paused (SIGSTOP) while
/// `count` SETs of `size` bytes go to the primary (pipelined), then
/// resumed; returns how long it takes until the replica's
/// `slave_repl_offset` reaches the primary's `master_repl_offset`.
pub fn replica_catch_up(dir: &Path, count: usize, size: usize) -> Result<CatchUp, String> {
    let e = |e: io::Error| e.to_string();
    let primary = start_server(dir, "primary", &[])?;
    let replica = start_server(dir, "replica", &["--replicaof".into(), "127.0.0.1".into(), primary.port.to_string()])?;
    let mut p = Resp::connect(primary.port).map_err(e)?;
    let mut r = Resp::connect(replica.port).map_err(e)?;
    let t = Instant::now();
    loop {
        let link = r.info("replication").map_err(e)?.into_iter().any(|(k, v)| k == "master_link_status" && v == "up");
        if link {
            break;
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err("the redis replica did not connect to its primary within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    p.cmd(&["CONFIG", "SET", "client-output-buffer-limit", "replica 0 0 0"]).map_err(e)?;
    let start_offset = p.info_u64("replication", "master_repl_offset").map_err(e)?.unwrap_or(0);
    // Pause the replica.
    // SAFETY: our own child.
    unsafe { libc::kill(replica.child.id() as i32, libc::SIGSTOP) };
    let value = dataplane::demo::payload(7, size);
    const BATCH: usize = 4096;
    let mut i = 0;
    while i < count {
        let n = BATCH.min(count - i);
        for j in i..i + n {
            let key = format!("key:{j:010}");
            p.send(&[b"SET", key.as_bytes(), &value]).map_err(e)?;
        }
        p.flush().map_err(e)?;
        for _ in 0..n {
            if let Reply::Error(m) = p.read().map_err(e)? {
                return Err(format!("redis SET: {m}"));
            }
        }
        i += n;
    }
    let goal = p.info_u64("replication", "master_repl_offset").map_err(e)?.ok_or("no master_repl_offset on the primary")?;
    // Resume and time the catch-up.
    let t = Instant::now();
    // SAFETY: our own child.
    unsafe { libc::kill(replica.child.id() as i32, libc::SIGCONT) };
    loop {
        let info = r.info("replication").map_err(e)?;
        let off = info.iter().find(|(k, _)| k == "slave_repl_offset").or_else(|| info.iter().find(|(k, _)| k == "master_repl_offset")).and_then(|(_, v)| v.parse::<u64>().ok()).unwrap_or(0);
        if off >= goal {
            break;
        }
        if t.elapsed() > Duration::from_secs(300) {
            return Err(format!("the redis replica did not catch up within 300 s (offset {off}, goal {goal})"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = t.elapsed().as_secs_f64();
    // Sanity: the replica holds the writes.
    let keys = r.cmd(&["DBSIZE"]).map_err(e)?;
    if keys != Reply::Int(count as i64) {
        return Err(format!("the redis replica has {keys:?} keys after catching up, expected {count}"));
    }
    drop(p);
    drop(r);
    drop(replica);
    drop(primary);
    Ok(CatchUp { secs, writes: count, repl_bytes: goal - start_offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_parses_nested_replies() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"*3\r\n+OK\r\n:42\r\n$5\r\nhello\r\n").unwrap();
        });
        let mut c = Resp::connect(port).unwrap();
        let r = c.cmd(&["X"]).unwrap();
        assert_eq!(r, Reply::Array(Some(vec![Reply::Simple("OK".into()), Reply::Int(42), Reply::Bulk(Some(b"hello".to_vec()))])));
    }
}
