//! An independent model of how Postfix's cleanup reads a message's primary header, and
//! the comparison of filtermail's view with it. Used by the `filtermail_header` fuzz target
//! and, on stable, by `tests/filtermail_postfix_header.rs` (`#[path]` module).
//!
//! Written from Postfix's observed behaviour (see `tests/filtermail_postfix_header.rs`),
//! not from `chatmaild::filtermail::header`: a byte-at-a-time reading of smtpd's records
//! (lines cut at `line_length_limit`) the way `is_header_buf` and `mime_state` treat them.
#![allow(dead_code)]

use mailparse::MailHeaderMap as _;

/// smtpd's `line_length_limit`: a longer line reaches cleanup as several records and only
/// the first one is tested for a field name.
pub const LINE_LENGTH_LIMIT: usize = 2048;
/// cleanup's `header_size_limit`: a field is cut there.
pub const HEADER_SIZE_LIMIT: usize = 102_400;

/// The header as Postfix stores it.
#[derive(Debug, Default)]
pub struct Stored {
    /// (name, value) with the value's lines joined by LF, as cleanup keeps them.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where the stored body starts in the input.
    pub body_start: usize,
    /// The header ended at an empty line (or at the end of the input), not at a line that
    /// Postfix moved into the body.
    pub clean_end: bool,
    /// Facts the strict rules refuse (any of them makes filtermail refuse the message).
    pub refused: Vec<&'static str>,
}

/// `is_header_buf`: the name length when `record` starts with `name[SP/HT]*:`.
fn is_header_buf(record: &[u8]) -> Option<(usize, bool)> {
    #[derive(PartialEq)]
    enum S {
        Init,
        Name,
        Space,
    }
    let mut state = S::Init;
    let mut len = 0;
    for &c in record {
        match c {
            b':' => return (state != S::Init).then_some((len, state == S::Space)),
            b' ' | b'\t' => match state {
                S::Init => return None,
                _ => state = S::Space,
            },
            c if !(0x21..=0x7e).contains(&c) => return None,
            _ => {
                if state == S::Space {
                    return None;
                }
                state = S::Name;
                len += 1;
            }
        }
    }
    None
}

/// Read `input` as Postfix does, noting everything the strict rules refuse.
pub fn read(input: &[u8]) -> Stored {
    let mut out = Stored {
        body_start: input.len(),
        clean_end: true,
        ..Stored::default()
    };
    let mut field: Option<(Vec<u8>, Vec<u8>, usize)> = None; // name, value, raw length
    let mut pos = 0;
    while pos < input.len() {
        let line_start = pos;
        let mut end = pos;
        while end < input.len() && input[end] != b'\n' {
            end += 1;
        }
        let next = if end < input.len() { end + 1 } else { end };
        let mut line = &input[line_start..end];
        // smtpd takes CRLF (and LF) as the line end.
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        pos = next;
        if line.is_empty() {
            out.body_start = next;
            break;
        }
        // filtermail's own bounds (OpenDKIM refuses a header block over 64 KiB)
        if next > 60_000 {
            out.refused.push("header too long");
        }
        if line.contains(&0) {
            out.refused.push("NUL");
        }
        if line.contains(&b'\r') {
            out.refused.push("bare CR");
        }
        let record = &line[..line.len().min(LINE_LENGTH_LIMIT)];
        if line[0] == b' ' || line[0] == b'\t' {
            let Some((_, value, raw_len)) = field.as_mut() else {
                out.refused.push("first line is a continuation");
                out.body_start = line_start;
                out.clean_end = false;
                break;
            };
            if line.iter().all(|&c| c == b' ' || c == b'\t') {
                out.refused.push("whitespace-only line");
            }
            value.push(b'\n');
            value.extend_from_slice(line);
            *raw_len += next - line_start;
        } else if let Some((name_len, space)) = is_header_buf(record) {
            if space {
                out.refused.push("space before colon");
            }
            if name_len > 998 {
                out.refused.push("long name");
            }
            out.fields.extend(field.take().map(|(n, v, _)| (n, v)));
            let colon = line.iter().position(|&c| c == b':').unwrap_or(line.len());
            field = Some((
                line[..name_len].to_vec(),
                line[(colon + 1).min(line.len())..].to_vec(),
                next - line_start,
            ));
        } else {
            out.refused.push("not a field");
            out.body_start = line_start;
            out.clean_end = false;
            break;
        }
        if let Some((name, value, raw_len)) = field.as_mut() {
            if *raw_len > 32_768 {
                out.refused.push("field too long");
            }
            // cleanup keeps at most header_size_limit bytes of `name:value`.
            let keep = HEADER_SIZE_LIMIT.saturating_sub(name.len() + 1);
            value.truncate(keep);
        }
    }
    out.fields.extend(field.map(|(n, v, _)| (n, v)));
    // A NUL ends the stored value (observed: `X-Nul: a\0b` is stored as `X-Nul: a`).
    for (_, value) in &mut out.fields {
        if let Some(nul) = value.iter().position(|&c| c == 0) {
            value.truncate(nul);
        }
    }
    out
}

/// mailparse's raw value, in the model's form: CRLF folds as LF, and the model's value
/// with the spaces mailparse skips after the colon removed.
fn normalize(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for (i, &c) in value.iter().enumerate() {
        if c == b'\r' && value.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(c);
    }
    out
}

fn skip_spaces(value: &[u8]) -> &[u8] {
    let n = value.iter().take_while(|&&c| c == b' ').count();
    &value[n..]
}

/// For one input: filtermail's header check, mailparse and the Postfix model must agree
/// on every header the check accepts. `Err` describes the first disagreement.
pub fn compare(input: &[u8]) -> Result<bool, String> {
    let model = read(input);
    let checked = chatmaild::filtermail::header::check(input);
    let model_accepts = model.refused.is_empty() && model.clean_end;
    if checked.is_ok() != model_accepts {
        return Err(format!(
            "acceptance: filtermail {:?}, model refuses {:?} (clean end {})",
            checked.as_ref().err(),
            model.refused,
            model.clean_end
        ));
    }
    let Ok(header) = checked else {
        return Ok(false);
    };
    let (parsed, body_start) = mailparse::parse_headers(input)
        .map_err(|e| format!("mailparse refuses an accepted header: {e}"))?;
    if body_start != model.body_start || header.body_start != model.body_start {
        return Err(format!(
            "body start: mailparse {body_start}, filtermail {}, model {}",
            header.body_start, model.body_start
        ));
    }
    if parsed.len() != model.fields.len() || header.fields.len() != model.fields.len() {
        return Err(format!(
            "field count: mailparse {}, filtermail {}, model {}",
            parsed.len(),
            header.fields.len(),
            model.fields.len()
        ));
    }
    for ((p, f), (name, value)) in parsed.iter().zip(&header.fields).zip(&model.fields) {
        if p.get_key_raw() != name.as_slice() || f.name != name.as_slice() {
            return Err(format!(
                "name: mailparse {:?}, model {:?}",
                p.get_key(),
                name
            ));
        }
        let want = skip_spaces(value);
        if normalize(p.get_value_raw()) != want || skip_spaces(&normalize(f.value)) != want {
            return Err(format!(
                "value of {:?}: mailparse {:?}, filtermail {:?}, model {:?}",
                p.get_key(),
                String::from_utf8_lossy(p.get_value_raw()),
                String::from_utf8_lossy(f.value),
                String::from_utf8_lossy(value)
            ));
        }
    }
    // The names the rules look up find the same fields.
    for name in ["From", "Content-Type", "Secure-Join", "Subject"] {
        let ours = header
            .fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
            .count();
        if parsed.get_all_headers(name).len() != ours {
            return Err(format!("{name} count differs"));
        }
    }
    Ok(true)
}
