//! BIRD 2's control socket (what `birdc` speaks): a line protocol on a Unix socket. The
//! daemon greets with `0001 BIRD <version> ready.`; each command is one line; each reply is
//! one or more lines `DDDD-text` (more follows) or ` text` (continues the previous code),
//! ended by a line `DDDD text`. Codes 0xxx are success, 1xxx/2xxx table rows and headings,
//! 8xxx run-time and 9xxx parse errors (BIRD's doc/reply_codes). Lines starting with `+` are
//! spontaneous output and belong to no reply.
//!
//! Written by hand: it is a few dozen lines, and no maintained crate speaks it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest reply line accepted (a `show protocols` row is under 100 bytes).
const MAX_LINE: usize = 4096;
/// Most lines in one reply (vipd asks only about its own protocols).
const MAX_LINES: usize = 100_000;

/// What went wrong talking to bird.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    /// The socket could not be reached, read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// bird said something that is not its protocol.
    #[error("unexpected answer from bird: {0:?}")]
    Protocol(String),
    /// bird refused the command (8xxx/9xxx).
    #[error("bird refused `{command}`: {code} {text}")]
    Refused {
        /// The command.
        command: String,
        /// bird's reply code.
        code: u16,
        /// bird's message.
        text: String,
    },
}

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The code of the last line.
    pub code: u16,
    /// Every line: its code (continuations carry the previous one) and text.
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// The text of the lines with code `code`.
    pub fn texts(&self, code: u16) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |(c, _)| *c == code)
            .map(|(_, t)| t.as_str())
    }
}

/// One line of the protocol.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    /// `DDDD-text` (`last` false) or `DDDD text` (`last` true).
    Coded {
        code: u16,
        last: bool,
        text: &'a str,
    },
    /// ` text`: continues the previous code.
    Continued(&'a str),
    /// `+...`: spontaneous output.
    Spontaneous,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    if let Some(text) = line.strip_prefix(' ') {
        return Some(Line::Continued(text));
    }
    if line.starts_with('+') {
        return Some(Line::Spontaneous);
    }
    let digits = line.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code = digits.parse().ok()?;
    let last = match line.as_bytes().get(4) {
        Some(b' ') | None => true,
        Some(b'-') => false,
        Some(_) => return None,
    };
    Some(Line::Coded {
        code,
        last,
        text: line.get(5..).unwrap_or(""),
    })
}

/// A connection to bird's control socket.
pub struct Bird {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The version bird announced.
    pub version: String,
}

impl Bird {
    /// Connect and read the greeting; every later read or write waits at most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Bird, BirdError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut bird = Bird {
            reader: BufReader::new(stream),
            writer,
            version: String::new(),
        };
        let hello = bird.read_reply("(greeting)")?;
        let text = hello.texts(1).next().unwrap_or("");
        if hello.code != 1 || !text.starts_with("BIRD ") {
            return Err(BirdError::Protocol(format!("{hello:?}")));
        }
        bird.version = text
            .trim_start_matches("BIRD ")
            .trim_end_matches(" ready.")
            .to_string();
        Ok(bird)
    }

    /// Send one command and read its reply; 8xxx/9xxx replies are [`BirdError::Refused`].
    pub fn command(&mut self, command: &str) -> Result<Reply, BirdError> {
        if command.contains('\n') {
            return Err(BirdError::Protocol(format!(
                "command with a line break: {command:?}"
            )));
        }
        self.writer.write_all(format!("{command}\n").as_bytes())?;
        let reply = self.read_reply(command)?;
        if reply.code >= 8000 {
            let text = reply
                .lines
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            return Err(BirdError::Refused {
                command: command.to_string(),
                code: reply.code,
                text,
            });
        }
        Ok(reply)
    }

    fn read_reply(&mut self, command: &str) -> Result<Reply, BirdError> {
        let mut lines = Vec::new();
        let mut code = None;
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE as u64 + 1)
                .read_line(&mut buf)?;
            if n == 0 {
                return Err(BirdError::Protocol(format!(
                    "connection closed during the reply to `{command}`"
                )));
            }
            if n > MAX_LINE || lines.len() >= MAX_LINES {
                return Err(BirdError::Protocol(format!(
                    "reply to `{command}` too long"
                )));
            }
            let line = buf.trim_end_matches(['\n', '\r']);
            match parse_line(line) {
                Some(Line::Coded {
                    code: c,
                    last,
                    text,
                }) => {
                    code = Some(c);
                    lines.push((c, text.to_string()));
                    if last {
                        return Ok(Reply { code: c, lines });
                    }
                }
                Some(Line::Continued(text)) => {
                    let c = code.ok_or_else(|| BirdError::Protocol(line.to_string()))?;
                    lines.push((c, text.to_string()));
                }
                Some(Line::Spontaneous) => {}
                None => return Err(BirdError::Protocol(line.to_string())),
            }
        }
    }
}

/// A protocol's state as `show protocols` lists it (`up`, `down`, `start`, ...).
pub fn protocol_states(reply: &Reply) -> Vec<(String, String)> {
    reply
        .texts(1002)
        .filter_map(|row| {
            let mut cols = row.split_whitespace();
            let name = cols.next()?;
            let state = cols.nth(2)?;
            Some((name.to_string(), state.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies as BIRD 2.0.12 sent them (recorded with `birdc` against a running daemon).
    const SHOW: &str = "2002-Name       Proto      Table      State  Since         Info\n1002-device1    Device     ---        up     21:11:41.904  \n bfd1       BFD        ---        up     21:11:41.904  \n uplink     BGP        ---        up     21:11:45.365  Established   \n vipd_10_77_100_1 Static     master4    down   21:12:06.010  \n0000 \n";

    /// A peer that answers each command line with the next canned reply.
    fn peer(replies: Vec<&'static str>) -> (Bird, std::thread::JoinHandle<Vec<String>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut theirs = theirs;
            theirs.write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
            let mut got = Vec::new();
            let mut r = BufReader::new(theirs.try_clone().unwrap());
            for reply in replies {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                got.push(line.trim_end().to_string());
                theirs.write_all(reply.as_bytes()).unwrap();
            }
            // Closing here ends the conversation: a reply left unfinished reads as EOF.
            got
        });
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let writer = ours.try_clone().unwrap();
        let mut bird = Bird {
            reader: BufReader::new(ours),
            writer,
            version: String::new(),
        };
        let hello = bird.read_reply("(greeting)").unwrap();
        assert_eq!(hello.code, 1);
        (bird, t)
    }

    #[test]
    fn lines() {
        assert_eq!(
            parse_line("0009-vipd_x: disabled"),
            Some(Line::Coded {
                code: 9,
                last: false,
                text: "vipd_x: disabled"
            })
        );
        assert_eq!(
            parse_line("0000 "),
            Some(Line::Coded {
                code: 0,
                last: true,
                text: ""
            })
        );
        assert_eq!(
            parse_line("0000"),
            Some(Line::Coded {
                code: 0,
                last: true,
                text: ""
            })
        );
        assert_eq!(parse_line(" bfd1  BFD"), Some(Line::Continued("bfd1  BFD")));
        assert_eq!(parse_line("+ spontaneous"), Some(Line::Spontaneous));
        assert_eq!(parse_line("00a1 x"), None);
        assert_eq!(parse_line("0001:x"), None);
        assert_eq!(parse_line("01"), None);
    }

    #[test]
    fn commands_replies_and_refusals() {
        let (mut bird, t) = peer(vec![
            "0009-vipd_10_77_100_1: disabled\n0000 \n",
            SHOW,
            "8003 No protocols match\n",
            "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n",
        ]);
        let r = bird.command("disable \"vipd_10_77_100_1\"").unwrap();
        assert_eq!(r.code, 0);
        assert_eq!(
            r.texts(9).collect::<Vec<_>>(),
            ["vipd_10_77_100_1: disabled"]
        );
        let r = bird.command("show protocols").unwrap();
        assert_eq!(
            protocol_states(&r),
            [
                ("device1".to_string(), "up".to_string()),
                ("bfd1".into(), "up".into()),
                ("uplink".into(), "up".into()),
                ("vipd_10_77_100_1".into(), "down".into()),
            ]
        );
        match bird.command("enable \"vipd_nope\"") {
            Err(BirdError::Refused { code, text, .. }) => {
                assert_eq!(code, 8003);
                assert_eq!(text, "No protocols match");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(bird.command("configure").unwrap().code, 3);
        assert!(matches!(bird.command("a\nb"), Err(BirdError::Protocol(_))));
        drop(bird);
        assert_eq!(
            t.join().unwrap(),
            [
                "disable \"vipd_10_77_100_1\"",
                "show protocols",
                "enable \"vipd_nope\"",
                "configure"
            ]
        );
    }

    #[test]
    fn a_closed_or_garbled_peer_is_an_error() {
        let (mut bird, t) = peer(vec!["0009-half a reply\n"]);
        assert!(matches!(
            bird.command("disable \"x\""),
            Err(BirdError::Protocol(_))
        ));
        let _ = t.join();
        let (mut bird, t) = peer(vec!["HTTP/1.1 200 OK\n"]);
        assert!(matches!(bird.command("x"), Err(BirdError::Protocol(_))));
        drop(bird);
        let _ = t.join();
    }
}
