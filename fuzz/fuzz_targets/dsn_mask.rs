//! DSN masking: whatever the password and however the DSN is written (ODBC attribute, braced
//! with `}}` escapes, URL user info, URL query parameter; percent-encoded or not), `mask_dsn`
//! never leaves the password visible, and no input makes it panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_mail::report::{MASK, mask_dsn};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Any text at all: no panic.
    let _ = mask_dsn(text);
    let mut parts = text.splitn(4, '\u{7f}');
    let (Some(form), Some(password)) = (parts.next(), parts.next()) else {
        return;
    };
    let filler = parts.next().unwrap_or("");
    let tail = parts.next().unwrap_or("");
    // The mask itself is made of `*`: a password of stars is indistinguishable from it; and
    // NUL stands for the mask below.
    if password.is_empty() || password.contains(['*', '\u{0}']) {
        return;
    }
    let braced =
        password.contains([';', '{', '}']) || password.starts_with(' ') || password.ends_with(' ');
    // The same DSNs with an empty password, to tell the DSN's own text from the password's.
    let bare = dsns(form, "", filler, tail, braced);
    for (dsn, without) in dsns(form, password, filler, tail, braced)
        .into_iter()
        .zip(bare)
    {
        let masked = mask_dsn(&dsn).replace(MASK, "\u{0}");
        assert!(
            !masked.contains(password),
            "password {password:?} visible in {masked:?} (from {dsn:?})"
        );
        let encoded = percent_encode(password);
        assert!(
            !masked.contains(&encoded) || without.contains(&encoded),
            "encoded password {encoded:?} visible in {masked:?} (from {dsn:?})"
        );
        // Not even a piece of it: no 4 characters of the password that the DSN without
        // the password does not already contain.
        let chars: Vec<(usize, char)> = password.char_indices().collect();
        for w in chars.windows(4) {
            let start = w[0].0;
            let end = w[3].0 + w[3].1.len_utf8();
            let piece = &password[start..end];
            assert!(
                !masked.contains(piece) || without.contains(piece),
                "{piece:?} of password {password:?} visible in {masked:?} (from {dsn:?}, bare {without:?})"
            );
        }
    }
});

/// The ways an administrator writes a password into a DSN, as the drivers read them.
fn dsns(form: &str, password: &str, filler: &str, tail: &str, braced: bool) -> Vec<String> {
    let key = ["PWD", "pwd", "Password", "PASSWORD", " PWD "][form.len() % 5];
    // Filler that stays one attribute / one URL component.
    let attr: String = filler
        .chars()
        .filter(|c| !matches!(c, ';' | '{' | '}' | '='))
        .collect();
    let plain: String = filler
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let plain = if plain.is_empty() {
        "x".to_string()
    } else {
        plain
    };
    let mut out = Vec::new();
    // ODBC: braced (with `}}` for `}`) whenever the value needs it, as odbc-api writes it.
    let value = if braced {
        format!("{{{}}}", password.replace('}', "}}"))
    } else {
        password.to_string()
    };
    out.push(format!(
        "DSN={attr};UID={plain};{key}={value};HOST={plain}:1111"
    ));
    out.push(format!("DRIVER={{{attr}}};{key}={value}"));
    out.push(format!("{key}={value}"));
    // Always braced, even when not needed.
    out.push(format!(
        "DSN={plain};{key}={{{}}};X={attr}",
        password.replace('}', "}}")
    ));
    // URLs: the password percent-encoded, and raw where the URL grammar allows it raw.
    let encoded = percent_encode(password);
    for scheme in ["postgres", "postgresql", "mysql", "mariadb"] {
        out.push(format!(
            "{scheme}://{plain}:{encoded}@{plain}:5432/{plain}?{tail}"
        ));
        out.push(format!(
            "{scheme}://{plain}@{plain}/{plain}?password={encoded}&x={plain}"
        ));
        let raw = if password.contains(['/', '?', '#', '%', '&', '=']) {
            encoded.as_str()
        } else {
            password
        };
        out.push(format!("{scheme}://{plain}:{raw}@{plain}/{plain}"));
    }
    out
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
