//! Records in BIND zone-file syntax.

use super::records::{Expected, Need, Rtype};

/// TTL of the records we suggest: an hour, short enough to fix mistakes quickly.
pub const TTL: u32 = 3600;

/// TXT strings are at most 255 bytes each (RFC 1035 character-strings).
const TXT_CHUNK: usize = 255;

/// TXT data as one or more quoted strings of at most 255 bytes.
pub fn quote_txt(text: &str) -> String {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > TXT_CHUNK {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
        .iter()
        .map(|c| format!("\"{}\"", c.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One record as a zone-file line: owner, TTL, class, type, data, in aligned columns.
pub fn line(record: &Expected) -> String {
    let data = match record.rtype {
        Rtype::Txt => quote_txt(&record.data),
        _ => record.data.clone(),
    };
    format!(
        "{:<40} {:<6} IN  {:<5}  {}",
        record.name,
        TTL,
        record.rtype.to_string(),
        data
    )
}

/// A record to add or fix, with a comment saying why (what was found).
pub struct Fix<'a> {
    pub record: &'a Expected,
    pub reason: String,
}

/// The zone text for the fixes: required ones first, then recommended ones, then reverse
/// DNS (set at the hosting provider). Empty sections are left out; an empty list gives a
/// comment only.
pub fn render(fixes: &[Fix<'_>]) -> String {
    const TITLES: [&str; 3] = [
        "; Required DNS records",
        "; Recommended DNS records",
        "; Reverse DNS: set these at the provider of the host's addresses",
    ];
    let section = |r: &Expected| match (r.rtype, r.need) {
        (Rtype::Ptr, _) => 2,
        (_, Need::Required) => 0,
        (_, Need::Recommended) => 1,
    };
    let mut out = String::new();
    for (i, title) in TITLES.iter().enumerate() {
        let chosen: Vec<&Fix> = fixes.iter().filter(|f| section(f.record) == i).collect();
        if chosen.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(title);
        out.push('\n');
        for fix in chosen {
            out.push_str(&format!("; {}\n", fix.reason));
            if fix.record.rtype == Rtype::Txt && fix.record.data.len() > TXT_CHUNK {
                // some providers' web forms take the value whole and split it themselves
                out.push_str(&format!(
                    "; (if your DNS provider wants one string: \"{}\")\n",
                    fix.record.data
                ));
            }
            out.push_str(&line(fix.record));
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("; all DNS records are in place\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::Rule;

    fn rec(name: &str, rtype: Rtype, data: &str, need: Need) -> Expected {
        Expected {
            name: name.into(),
            rtype,
            data: data.into(),
            need,
            rule: Rule::Dmarc,
            label: "",
        }
    }

    #[test]
    fn lines_are_aligned() {
        assert_eq!(
            line(&rec("x.org.", Rtype::Mx, "10 x.org.", Need::Required)),
            format!("{:<40} 3600   IN  MX     10 x.org.", "x.org.")
        );
        assert_eq!(
            line(&rec("x.org.", Rtype::Txt, "v=spf1 a ~all", Need::Required)),
            format!("{:<40} 3600   IN  TXT    \"v=spf1 a ~all\"", "x.org.")
        );
    }

    #[test]
    fn long_txt_is_split_into_255_byte_strings() {
        let value = format!("v=DKIM1;k=rsa;p={};s=email;t=s", "A".repeat(392));
        let quoted = quote_txt(&value);
        let parts: Vec<&str> = quoted.split("\" \"").collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 256, "opening quote + 255 bytes");
        let joined: String = parts.concat().replace('"', "");
        assert_eq!(joined, value);
        assert_eq!(quote_txt(""), "\"\"");
        assert_eq!(quote_txt("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(quote_txt(&"x".repeat(255)).matches('"').count(), 2);
    }

    #[test]
    fn render_groups_and_explains() {
        let mx = rec("x.org.", Rtype::Mx, "10 x.org.", Need::Required);
        let srv = rec(
            "_imap._tcp.x.org.",
            Rtype::Srv,
            "0 1 143 x.org.",
            Need::Recommended,
        );
        let ptr = rec(
            "7.113.0.203.in-addr.arpa.",
            Rtype::Ptr,
            "x.org.",
            Need::Recommended,
        );
        let text = render(&[
            Fix {
                record: &srv,
                reason: "missing: no SRV record".into(),
            },
            Fix {
                record: &mx,
                reason: "wrong: MX 10 y.org.".into(),
            },
            Fix {
                record: &ptr,
                reason: "wrong: host.provider.net.".into(),
            },
        ]);
        let want = format!(
            "; Required DNS records\n; wrong: MX 10 y.org.\n{}\n\n\
             ; Recommended DNS records\n; missing: no SRV record\n{}\n\n\
             ; Reverse DNS: set these at the provider of the host's addresses\n; wrong: host.provider.net.\n{}\n",
            line(&mx),
            line(&srv),
            line(&ptr)
        );
        assert_eq!(text, want);
        assert_eq!(render(&[]), "; all DNS records are in place\n");

        let long = "v=DKIM1;k=rsa;p=".to_string() + &"A".repeat(300);
        let dkim = rec(
            "opendkim._domainkey.x.org.",
            Rtype::Txt,
            &long,
            Need::Required,
        );
        let text = render(&[Fix {
            record: &dkim,
            reason: "missing".into(),
        }]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            format!("; (if your DNS provider wants one string: \"{long}\")")
        );
        assert_eq!(lines[3], line(&dkim));
    }
}
