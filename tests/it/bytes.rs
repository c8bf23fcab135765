//! SPEC §5.8: the message is stored byte for byte, whatever it holds, and the size limit
//! is exact.

use crate::common::*;

#[test]
fn stored_bytes_equal_input_bytes() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("NUL", b"Subject: nul\n\nbefore\0after\0\0end\n".to_vec()),
        ("CR", b"Subject: cr\r\rbody\rline\r".to_vec()),
        (
            "CRLF",
            b"Subject: crlf\r\n\r\nline 1\r\nline 2\r\n".to_vec(),
        ),
        ("8-bit", (0u8..=255).cycle().take(4096).collect()),
        (
            "invalid UTF-8",
            b"Subject: \xff\xfe\xc3\x28\n\n\xe2\x82".to_vec(),
        ),
        ("empty", Vec::new()),
        ("no final newline", b"x".to_vec()),
    ];
    for mailer in MAILERS {
        let s = Setup::standard("");
        for (name, body) in &cases {
            s.run()
                .mailer(mailer)
                .args(["-l", "alice"])
                .stdin(body.clone())
                .expect(status_for(mailer, 0));
            let mut want = prefix(mailer);
            want.extend_from_slice(body);
            assert_eq!(s.mails().pop().unwrap().body, want, "{name} under {mailer}");
        }
    }
}

#[test]
fn twenty_megabytes_survive_exactly() {
    let body = pseudo_random(20 * 1024 * 1024);
    let s = Setup::standard("");
    s.run().args(["-l", "alice"]).stdin(body.clone()).expect(0);
    let stored = s.mails().pop().unwrap().body;
    assert_eq!(stored.len(), body.len());
    assert!(stored == body, "20 MB body differs");
}

#[test]
fn size_limit_is_exact_and_prefix_lines_do_not_count() {
    for mailer in MAILERS {
        let s = Setup::standard("MaxMessageSize = 1000");
        s.run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin(vec![b'x'; 1000])
            .expect(status_for(mailer, 0));
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "alice"])
            .stdin(vec![b'x'; 1001])
            .expect(status_for(mailer, 77));
        assert_eq!(text(&out.stdout), "\nToo long for alice.\n", "{mailer}");
        assert_eq!(s.count(), 1, "{mailer}");
    }
}

#[test]
fn too_long_and_unknown_is_unknown() {
    let s = Setup::standard("MaxMessageSize = 10");
    s.run()
        .args(["-l", "carol"])
        .stdin(vec![b'x'; 100])
        .expect(67);
}

#[test]
fn unlimited_when_not_set() {
    let s = Setup::standard("");
    s.run()
        .args(["-l", "alice"])
        .stdin(vec![b'y'; 3 * 1024 * 1024])
        .expect(0);
    assert_eq!(s.mails()[0].body.len(), 3 * 1024 * 1024);
}

#[test]
fn a_regular_file_on_stdin_like_qmail() {
    let s = Setup::standard("");
    let file = s.path("message");
    std::fs::write(&file, b"Subject: file\n\nseekable\0input\n").unwrap();
    let status = s
        .run()
        .mailer("qmail")
        .args(["-l", "alice"])
        .command()
        .stdin(std::fs::File::open(&file).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(99));
    let mut want = prefix("qmail");
    want.extend_from_slice(b"Subject: file\n\nseekable\0input\n");
    assert_eq!(s.mails()[0].body, want);
}
