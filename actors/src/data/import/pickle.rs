//! A pickle reader that only ever yields a string, and executes nothing.
//!
//! LiveCodeBench ships its private tests as `base64(zlib(pickle.dumps(json_string)))`.
//! Unpickling with Python would run whatever the blob asks for (`GLOBAL` + `REDUCE` is
//! arbitrary code), so this reads the handful of opcodes a pickled `str` uses, on any
//! protocol (0 to 5), and refuses every other opcode with its name and byte offset. No
//! object is ever constructed: the only value it can return is the one string.

use std::fmt;

/// Why a blob is not a pickled string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    /// Byte offset of the opcode (or the data) at fault.
    pub offset: usize,
    /// What is wrong there.
    pub reason: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for PickleError {}

fn err(offset: usize, reason: impl Into<String>) -> PickleError {
    PickleError {
        offset,
        reason: reason.into(),
    }
}

/// Opcodes that build objects, call or import anything: named in the refusal.
fn refused_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'c' => "GLOBAL (imports a name)",
        0x93 => "STACK_GLOBAL (imports a name)",
        b'R' => "REDUCE (calls a callable)",
        b'i' => "INST (imports and calls)",
        b'o' => "OBJ (calls a class)",
        0x81 => "NEWOBJ (calls a class)",
        0x92 => "NEWOBJ_EX (calls a class)",
        b'b' => "BUILD (sets object state)",
        0x82 => "EXT1 (imports from the extension registry)",
        0x83 => "EXT2 (imports from the extension registry)",
        0x84 => "EXT4 (imports from the extension registry)",
        b'P' => "PERSID (persistent load)",
        b'Q' => "BINPERSID (persistent load)",
        _ => return None,
    })
}

/// Reads a pickle that holds one `str` and returns it; any other content is an error.
pub fn read_string(blob: &[u8]) -> Result<String, PickleError> {
    let mut i = 0;
    let mut value: Option<String> = None;
    let take = |i: &mut usize, n: usize| -> Result<&[u8], PickleError> {
        let end = i
            .checked_add(n)
            .filter(|&e| e <= blob.len())
            .ok_or_else(|| err(*i, format!("{n} bytes announced, {} left", blob.len() - *i)))?;
        let s = &blob[*i..end];
        *i = end;
        Ok(s)
    };
    let le = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    };
    loop {
        let at = i;
        let op = *blob.get(i).ok_or_else(|| err(i, "ends without STOP"))?;
        i += 1;
        match op {
            // PROTO n: the protocol number.
            0x80 => {
                let v = take(&mut i, 1)?[0];
                if v > 5 {
                    return Err(err(at, format!("protocol {v} is newer than 5")));
                }
            }
            // FRAME n: a length hint for the next bytes; nothing to do.
            0x95 => {
                take(&mut i, 8)?;
            }
            // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8: length-prefixed UTF-8.
            0x8c | b'X' | 0x8d => {
                let width = match op {
                    0x8c => 1,
                    b'X' => 4,
                    _ => 8,
                };
                let n = le(take(&mut i, width)?);
                let n = usize::try_from(n).map_err(|_| err(at, "string length overflows"))?;
                let bytes = take(&mut i, n)?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|e| err(at, format!("string is not UTF-8: {e}")))?;
                set(&mut value, s.to_string(), at)?;
            }
            // UNICODE (protocol 0): raw-unicode-escape text up to a newline.
            b'V' => {
                let rest = &blob[i..];
                let nl = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or_else(|| err(at, "UNICODE string without its newline"))?;
                let s = raw_unicode_escape(&rest[..nl]).map_err(|r| err(at, r))?;
                i += nl + 1;
                set(&mut value, s, at)?;
            }
            // MEMOIZE, BINPUT n, LONG_BINPUT n, PUT n\n: store in the memo; unused here.
            0x94 => {}
            b'q' => {
                take(&mut i, 1)?;
            }
            b'r' => {
                take(&mut i, 4)?;
            }
            b'p' => {
                let nl = blob[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or_else(|| err(at, "PUT without its newline"))?;
                i += nl + 1;
            }
            // STOP: the value must be the string, and nothing may follow.
            b'.' => {
                if i != blob.len() {
                    return Err(err(i, "bytes after STOP"));
                }
                return value.ok_or_else(|| err(at, "STOP with no string on the stack"));
            }
            other => {
                return Err(err(
                    at,
                    match refused_name(other) {
                        Some(name) => {
                            format!("opcode {name} refused: only a pickled string is read")
                        }
                        None => {
                            format!("opcode 0x{other:02x} refused: only a pickled string is read")
                        }
                    },
                ));
            }
        }
    }
}

fn set(value: &mut Option<String>, s: String, at: usize) -> Result<(), PickleError> {
    if value.is_some() {
        return Err(err(at, "a second value: only one string is read"));
    }
    *value = Some(s);
    Ok(())
}

/// Python's raw-unicode-escape: Latin-1 bytes, with `\uXXXX` and `\UXXXXXXXX` escapes.
fn raw_unicode_escape(b: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && matches!(b.get(i + 1), Some(b'u' | b'U')) {
            let n = if b[i + 1] == b'u' { 4 } else { 8 };
            let hex = b
                .get(i + 2..i + 2 + n)
                .and_then(|h| std::str::from_utf8(h).ok())
                .ok_or("truncated \\u escape")?;
            let code = u32::from_str_radix(hex, 16).map_err(|_| "bad \\u escape")?;
            out.push(char::from_u32(code).ok_or("\\u escape is not a character")?);
            i += 2 + n;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps("héllo", protocol=4)`.
    const PROTO4: &[u8] = b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00\x8c\x06h\xc3\xa9llo\x94.";

    #[test]
    fn reads_a_string_at_every_protocol() {
        assert_eq!(read_string(PROTO4).unwrap(), "héllo");
        // protocol 0: `V` text in Latin-1, `\u` escapes above it, then PUT.
        assert_eq!(read_string(b"Vh\xe9llo\np0\n.").unwrap(), "héllo");
        assert_eq!(read_string(b"V\\u20ac5\np0\n.").unwrap(), "€5");
        // protocol 2/3: BINUNICODE with a 4-byte length, BINPUT.
        assert_eq!(
            read_string(b"\x80\x03X\x06\x00\x00\x00h\xc3\xa9llot\x00q\x00.")
                .unwrap_err()
                .reason,
            "opcode 0x74 refused: only a pickled string is read"
        );
        assert_eq!(
            read_string(b"\x80\x03X\x06\x00\x00\x00h\xc3\xa9lloq\x00.").unwrap(),
            "héllo"
        );
    }

    #[test]
    fn a_hostile_pickle_is_refused_and_nothing_runs() {
        // `cos\nsystem\n(S'touch /tmp/pwned'\ntR.`: GLOBAL os.system, then REDUCE.
        let e = read_string(b"cos\nsystem\n(S'touch /tmp/pwned'\ntR.").unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.reason.contains("GLOBAL"), "{e}");
        // protocol 4 STACK_GLOBAL after two strings.
        let e = read_string(b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93.").unwrap_err();
        assert!(
            e.reason.contains("second value") || e.reason.contains("STACK_GLOBAL"),
            "{e}"
        );
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        assert!(read_string(&PROTO4[..PROTO4.len() - 1]).is_err());
        assert!(read_string(&PROTO4[..12]).is_err());
        let mut extra = PROTO4.to_vec();
        extra.push(b'.');
        assert_eq!(read_string(&extra).unwrap_err().reason, "bytes after STOP");
        assert!(read_string(b"\x80\x04.").is_err());
        assert!(read_string(b"").is_err());
        // A length that runs past the end.
        assert!(read_string(b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff").is_err());
    }
}
