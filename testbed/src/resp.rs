//! Just enough RESP2 to administer a test Redis server: commands sent as arrays of bulk
//! strings, replies read back. No client library, so the testbed builds without one.

use std::fmt;
use std::io::{self, BufRead, Write};

/// A reply from a Redis server (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: an error reply (at the top level, [`crate::RedisServer::try_cmd`]
    /// returns it as its error).
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*2\r\n...`.
    Array(Vec<RespValue>),
}

impl RespValue {
    /// The reply as text: strings and numbers as they are, `(nil)`, arrays as
    /// `[a, b]`.
    pub fn text(&self) -> String {
        match self {
            RespValue::Simple(s) | RespValue::Error(s) => s.clone(),
            RespValue::Int(n) => n.to_string(),
            RespValue::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            RespValue::Nil => "(nil)".to_owned(),
            RespValue::Array(items) => {
                format!("[{}]", items.iter().map(RespValue::text).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

impl fmt::Display for RespValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Writes `args` as one command (an array of bulk strings).
pub(crate) fn write_command(out: &mut impl Write, args: &[&str]) -> io::Result<()> {
    let mut frame = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        frame.extend_from_slice(arg.as_bytes());
        frame.extend_from_slice(b"\r\n");
    }
    out.write_all(&frame)?;
    out.flush()
}

/// Reads one reply.
pub(crate) fn read_reply(input: &mut impl BufRead) -> io::Result<RespValue> {
    let line = read_line(input)?;
    let mut chars = line.chars();
    let kind = chars.next();
    let rest = chars.as_str();
    match kind {
        Some('+') => Ok(RespValue::Simple(rest.to_owned())),
        Some('-') => Ok(RespValue::Error(rest.to_owned())),
        Some(':') => Ok(RespValue::Int(parse_number(rest)?)),
        Some('$') => {
            let len = parse_number(rest)?;
            if len < 0 {
                return Ok(RespValue::Nil);
            }
            let mut body = vec![0; usize::try_from(len).map_err(invalid)? + 2];
            input.read_exact(&mut body)?;
            if !body.ends_with(b"\r\n") {
                return Err(invalid(format!("bulk string of {len} bytes not followed by CRLF")));
            }
            body.truncate(body.len() - 2);
            Ok(RespValue::Bulk(body))
        }
        Some('*') => {
            let count = parse_number(rest)?;
            if count < 0 {
                return Ok(RespValue::Nil);
            }
            (0..count)
                .map(|_| read_reply(input))
                .collect::<io::Result<_>>()
                .map(RespValue::Array)
        }
        _ => Err(invalid(format!("unexpected reply line {line:?}"))),
    }
}

/// One `\r\n`-terminated line, without the terminator; never empty.
fn read_line(input: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    input.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") || line.len() < 3 {
        return Err(if line.is_empty() {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection")
        } else {
            invalid(format!("malformed reply line {:?}", String::from_utf8_lossy(&line)))
        });
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(invalid)
}

fn parse_number(text: &str) -> io::Result<i64> {
    text.parse().map_err(|_| invalid(format!("not a number: {text:?}")))
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<RespValue> {
        read_reply(&mut &bytes[..])
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        write_command(&mut out, &["ACL", "SETUSER", "a b", ""]).unwrap();
        assert_eq!(out, b"*4\r\n$3\r\nACL\r\n$7\r\nSETUSER\r\n$3\r\na b\r\n$0\r\n\r\n");
    }

    #[test]
    fn replies_of_every_kind() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), RespValue::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR no such user\r\n").unwrap(),
            RespValue::Error("ERR no such user".into())
        );
        assert_eq!(parse(b":-7\r\n").unwrap(), RespValue::Int(-7));
        assert_eq!(parse(b"$4\r\na\r\nb\r\n").unwrap(), RespValue::Bulk(b"a\r\nb".to_vec()));
        assert_eq!(parse(b"$-1\r\n").unwrap(), RespValue::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), RespValue::Nil);
        let nested = parse(b"*3\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n:1\r\n").unwrap();
        assert_eq!(
            nested,
            RespValue::Array(vec![
                RespValue::Bulk(b"flags".to_vec()),
                RespValue::Array(vec![RespValue::Bulk(b"on".to_vec())]),
                RespValue::Int(1),
            ])
        );
        assert_eq!(nested.text(), "[flags, [on], 1]");
    }

    #[test]
    fn malformed_or_cut_replies_are_errors() {
        assert_eq!(parse(b"").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        for bad in [
            &b"OK\r\n"[..],
            b"+OK\n",
            b":x\r\n",
            b"$3\r\nabcd\r\n",
            b"\r\n",
            "é\r\n".as_bytes(),
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Cut off inside an array.
        assert_eq!(parse(b"*2\r\n:1\r\n").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(parse(b"$5\r\nab").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
