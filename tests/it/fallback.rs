//! SPEC §4 and §5.6: the Fallback for unknown recipients — environment, status mapping,
//! missing programs, time limit, output, and hostile envelopes against both command forms.

use std::time::{Duration, Instant};

use crate::common::*;

fn with_fallback(command: &str, extra: &str) -> Setup {
    Setup::standard(&format!("Fallback = {command}\n{extra}"))
}

#[test]
fn fallback_gets_message_and_envelope_and_its_success_is_delivery() {
    for mailer in MAILERS {
        let s = Setup::standard("");
        let out_file = s.path("fallback.out");
        s.configure(
            &format!(
                "{OPTIONS}\nFallback = /bin/sh -c \"{{ env | grep -E '^(SENDER|LOCAL|HOST|RECIPIENT)=' | sort; cat; }} > {}\"",
                out_file.display()
            ),
            "",
        );
        s.run()
            .mailer(mailer)
            .args(["-l", "Carol", "-h", "Example.com", "-s", "bob@example.org"])
            .stdin("the message\n")
            .expect(status_for(mailer, 0));
        let got = std::fs::read_to_string(&out_file).unwrap();
        assert_eq!(
            got,
            "HOST=Example.com\nLOCAL=Carol\nRECIPIENT=Carol@Example.com\nSENDER=bob@example.org\nthe message\n",
            "{mailer}"
        );
        assert_eq!(s.count(), 0, "the Fallback delivered it, not us");
    }
}

#[test]
fn recipient_from_the_mta_is_kept() {
    let s = Setup::standard("");
    let out_file = s.path("r.out");
    s.configure(
        &format!(
            "{OPTIONS}\nFallback = /bin/sh -c \"echo $RECIPIENT > {}\"",
            out_file.display()
        ),
        "",
    );
    s.run()
        .mailer("qmail")
        .env("RECIPIENT", "db-carol@example.com")
        .env("LOCAL", "carol")
        .expect(99);
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "db-carol@example.com\n"
    );
}

#[test]
fn fallback_status_is_mapped_per_mailer() {
    for code in [
        0, 1, 3, 64, 65, 67, 69, 70, 71, 73, 74, 75, 77, 78, 99, 100, 111, 127, 255,
    ] {
        let s = with_fallback(&format!("/bin/sh -c 'cat >/dev/null; exit {code}'"), "");
        for mailer in MAILERS {
            s.run()
                .mailer(mailer)
                .args(["-l", "carol"])
                .expect(status_for(mailer, code));
        }
    }
}

#[test]
fn missing_or_forbidden_program_falls_through_to_the_bounce() {
    let s = Setup::standard("");
    let not_exec = s.path("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    mode(&not_exec, 0o644);
    for program in ["/nonexistent/procmail", not_exec.to_str().unwrap()] {
        s.configure(
            &format!("{OPTIONS}\nFallback = {program} -d $local"),
            BOUNCE,
        );
        for mailer in MAILERS {
            let out = s
                .run()
                .mailer(mailer)
                .args(["-l", "carol"])
                .expect(status_for(mailer, 67));
            assert!(
                text(&out.stdout).contains("No mailbox for carol"),
                "{mailer}"
            );
            assert!(
                text(&out.stderr).contains("cannot be run"),
                "{}",
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn a_hanging_fallback_is_killed_and_the_mail_deferred() {
    let s = Setup::standard("");
    let pidfile = s.path("child.pid");
    s.configure(
        &format!(
            "{OPTIONS}\nFallbackTimeout = 1\nFallback = /bin/sh -c \"sleep 60 & echo $! > {}; wait\"",
            pidfile.display()
        ),
        "",
    );
    for mailer in ["sendmail", "qmail"] {
        let started = Instant::now();
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "carol"])
            .expect(status_for(mailer, 75));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        assert!(
            text(&out.stderr).contains("timed out"),
            "{}",
            text(&out.stderr)
        );
        // The whole process group is gone, grandchildren included.
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        std::thread::sleep(Duration::from_millis(200));
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "sleep {pid} survived");
    }
}

#[test]
fn a_fallback_killed_by_a_signal_defers() {
    let s = with_fallback("/bin/sh -c 'kill -9 $$'", "");
    for mailer in MAILERS {
        let out = s
            .run()
            .mailer(mailer)
            .args(["-l", "carol"])
            .expect(status_for(mailer, 75));
        assert!(text(&out.stderr).contains("signal 9"));
    }
}

#[test]
fn a_flooding_fallback_neither_blocks_nor_floods() {
    let s = with_fallback(
        "/bin/sh -c 'head -c 5000000 /dev/zero | tr \"\\0\" x >&2; head -c 5000000 /dev/zero; exit 67'",
        "",
    );
    let started = Instant::now();
    let out = s.run().args(["-l", "carol"]).expect(67);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        out.stderr.len() < 100_000,
        "stderr passed on: {} bytes",
        out.stderr.len()
    );
    assert!(
        out.stdout.len() <= 64 * 1024,
        "stdout passed on: {} bytes",
        out.stdout.len()
    );
    assert!(out.stderr.starts_with(b"xxxx"));
}

#[test]
fn the_documented_shell_form_works_for_ordinary_addresses() {
    let s = Setup::standard("");
    let out_file = s.path("argv.out");
    s.configure(
        &format!(
            "{OPTIONS}\nFallback = /bin/sh -c \"printf '%s|' -f $sender -d $local $domain $HOME > {}\"",
            out_file.display()
        ),
        "",
    );
    s.run()
        .args(["-l", "Carol", "-h", "example.com", "-s", "bob@example.org"])
        .env("HOME", "/home/test")
        .expect(0);
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "-f|bob@example.org|-d|carol|example.com|/home/test|"
    );
}

/// Senders a remote party can choose that would run code if pasted into a shell.
const HOSTILE_SENDERS: &[&str] = &[
    "x$(touch PWNED)",
    "`touch PWNED`",
    "a;touch PWNED",
    "a\"b;touch PWNED;\"",
    "a'b;touch PWNED;'",
    "$(touch${IFS}PWNED)@example.com",
    "a|touch PWNED",
    "a&&touch PWNED",
    "a>PWNED",
    "*",
    "-oQ/tmp/x",
    "${IFS}touch${IFS}PWNED",
    "\\\"; touch PWNED; \\\"",
];

#[test]
fn hostile_senders_run_nothing_through_either_fallback_form() {
    let s = Setup::standard("");
    let out_file = s.path("argv.out");
    let forms = [
        format!(
            "/bin/sh -c \"printf '%s\\n' $sender $local > {}\"",
            out_file.display()
        ),
        format!(
            "/bin/sh -c \"printf '%s\\n' '$sender' \\\"$local\\\" > {}\"",
            out_file.display()
        ),
        "/usr/bin/env printf '%s\\n' $sender $local".to_string(),
        // Inside a command substitution in double quotes: a word of its own there too.
        format!(
            "/bin/sh -c \"printf '%s\\n' \\\"$(printf %s $sender)\\\" $local > {}\"",
            out_file.display()
        ),
        // The script attached to its option, as getopt allows (`su -c'…'`, `--command=…`).
        format!(
            "/usr/bin/script -q -O /dev/null -c\"printf '%s\\n' $sender $local > {}\"",
            out_file.display()
        ),
        format!(
            "/usr/bin/script -q -O /dev/null --command=\"printf '%s\\n' $sender $local > {}\"",
            out_file.display()
        ),
    ];
    for form in &forms {
        s.configure(&format!("{OPTIONS}\nFallback = {form}"), "");
        for sender in HOSTILE_SENDERS {
            for local in ["carol", "x$(touch PWNED)", "a;touch PWNED"] {
                let _ = std::fs::remove_file(&out_file);
                let out = s
                    .run()
                    .args(["-l", local, "-s", sender])
                    .command()
                    .current_dir(s.dir.path())
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{form} / {sender}: {}",
                    text(&out.stderr)
                );
                assert!(
                    !s.path("PWNED").exists(),
                    "command ran: {form} with sender {sender}"
                );
                let printed = if form.contains("env printf") {
                    text(&out.stdout)
                } else {
                    std::fs::read_to_string(&out_file).unwrap()
                };
                assert_eq!(
                    printed,
                    format!("{sender}\n{}\n", local.to_ascii_lowercase()),
                    "the values arrive intact, as data ({form})"
                );
            }
        }
    }
}

#[test]
fn senders_with_line_breaks_are_refused_before_anything_runs() {
    let s = Setup::standard("");
    s.configure(
        &format!("{OPTIONS}\nFallback = /bin/sh -c \"touch PWNED-$sender\""),
        "",
    );
    for sender in ["a\nb", "a\r\nb", "x\n$(touch PWNED)"] {
        let out = s
            .run()
            .args(["-l", "carol", "-s", sender])
            .command()
            .current_dir(s.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("Invalid sender"));
        assert_eq!(
            text(&out.stdout),
            "\nFailure: InvalidSender\n",
            "not blamed on the configuration"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("PWNED"))
        .collect();
    assert!(leftovers.is_empty());
}

/// A macro inside the script of a second shell (`su … -c` inside `sh -c`) would be expanded
/// as data by the first shell and then parsed as code by the second: the configuration is
/// refused (78, for every recipient, before anything runs), with a message that says how
/// to write it instead. The same for a program that parses its arguments as code (`ssh`).
#[test]
fn macros_handed_to_a_second_interpreter_are_a_configuration_error() {
    let s = Setup::standard("");
    let pwned = s.path("PWNED");
    let pwned = pwned.display();
    for command in [
        format!("/bin/sh -c \"su nobody -s /bin/sh -c 'touch {pwned}-$sender'\""),
        format!("/bin/sh -c 'eval touch {pwned}-$sender'"),
        format!("/usr/bin/ssh localhost touch {pwned}-$sender"),
        format!("/usr/bin/env -S 'touch {pwned}-$sender'"),
        format!("/usr/bin/perl -e'open(F, \">{pwned}-$sender\")'"),
        format!("/bin/sh -c \"sed -n 's|^|{pwned}-$sender|w {pwned}' /dev/null\""),
        // Evaluators inside "$(…)", behind reserved words, after a comment with a quote in
        // it (a continuation line), and a shell reading the value on its standard input.
        format!("/bin/sh -c 'x=\"$(eval touch {pwned}-$sender)\"'"),
        format!("/bin/sh -c 'if true; then eval touch {pwned}-$sender; fi'"),
        format!("/bin/sh -c '# a \"b\n  eval touch {pwned}-$sender'"),
        format!("/bin/sh -c 'echo touch {pwned}-$sender | /bin/sh'"),
        // bash runs the command substitutions in a subscript's value.
        format!("/bin/bash -c 'a[$sender]=1; touch {pwned}-ok'"),
    ] {
        s.configure(&format!("{OPTIONS}\nFallback = {command}"), BOUNCE);
        for local in ["alice", "carol"] {
            let out = s
                .run()
                .args(["-l", local, "-s", "x;touch${IFS}PWNED2"])
                .expect(78);
            let err = text(&out.stderr);
            assert!(
                err.contains("$sender would reach") && err.contains("as code"),
                "{command}: {err}"
            );
        }
        assert_eq!(s.count(), 0, "{command}: refused before any delivery");
        let ran = std::fs::read_dir(s.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("PWNED"));
        assert!(!ran, "{command}");
    }
}

#[test]
fn macros_may_not_name_the_program() {
    let s = with_fallback("/usr/lib/$local", "");
    let out = s.run().args(["-l", "carol"]).expect(78);
    assert!(text(&out.stderr).contains("program name"));
}

#[test]
fn the_log_names_the_status_the_fallback_really_exited_with() {
    let s = with_fallback("/bin/sh -c 'exit 3'", "");
    let out = s.run().args(["-l", "carol"]).stdin("").expect(70);
    assert!(
        text(&out.stderr).contains("exited with status 3 (taken as 70)"),
        "{}",
        text(&out.stderr)
    );
}

/// The rewrite and the check against the shells themselves: scripts assembled from pieces
/// that put `$sender` everywhere a script may (quotes, substitutions, comments,
/// here-documents, `${…}`, arithmetic, pipes, reserved words), joined at random. Each one
/// is either refused when the line is read, or run by dash and by bash with senders that
/// are code in every one of those places, and then no value may have run.
#[test]
fn assembled_scripts_run_no_value_as_code_in_dash_or_bash() {
    use virt_mail::fallback::FallbackCommand;
    use virt_mail::macros::Macros;

    const PIECES: &[&str] = &[
        "echo $sender",
        "echo \"$sender\"",
        "echo '$sender'",
        "echo \"$(echo $sender)\"",
        "echo `echo $sender`",
        "echo \"`echo \"$sender\"`\"",
        "echo ${x:-$sender} \"${x:-$sender}\" ${x:+'$sender'}",
        "# it's a \"comment\" $sender",
        "cat <<EOF\nit's $sender $(echo $sender)\nEOF",
        "cat <<'EOF'\nit's $sender\nEOF",
        "x=$sender; y=\"$sender\"",
        "[ \"$sender\" = a ] || true",
        "case $sender in a) echo a;; *) echo $sender;; esac",
        "if true; then echo $sender; fi",
        "for v in $sender; do echo \"$v\"; done",
        "eval echo $sender",
        "echo $sender | sh",
        "echo $sender | cat",
        "echo $(( 1 + 1 ))",
        "n=$(( $sender + 1 ))",
        "a[$sender]=1",
        "[[ $sender -eq 1 ]]",
        "printf '%s\\n' \"$(printf '%s' \"$sender\")\"",
        "f() { echo $sender; }; f",
        "$sender",
        "test -n \"$sender\" && echo ok",
        "echo \"it's\" $sender",
        "echo \\$sender \"\\$sender\"",
        "( echo $sender ) >/dev/null 2>&1; { echo \"$sender\"; }",
        "echo \"$( (echo $sender) )\"",
        "cat <<< \"$sender\"",
        "trap 'echo $sender' EXIT",
        "sh -c \"echo $sender\"",
        "export V=$sender; echo \"$V\"",
        "echo $sender | xargs echo",
    ];
    const SENDERS: &[&str] = &[
        "x$(touch PWNED)",
        "`touch PWNED`",
        "a;touch PWNED",
        "a[$(touch PWNED)]",
        "'\"$(touch PWNED)\"'",
        "EOF\ntouch PWNED",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut refused, mut ran) = (0, 0);
    for _ in 0..150 {
        let count = 1 + next(3);
        let script: Vec<&str> = (0..count).map(|_| PIECES[next(PIECES.len())]).collect();
        let script = script.join(if next(2) == 0 { "\n" } else { "; " });
        for shell in ["/bin/sh", "/bin/bash"] {
            let line = format!("{shell} -c '{}'", script.replace('\'', "'\\''"));
            let Ok(command) = FallbackCommand::parse(&line) else {
                refused += 1;
                continue;
            };
            for sender in SENDERS {
                let macros = Macros {
                    sender,
                    ..Macros::default()
                };
                let prepared = command.prepare(&macros);
                let _ = std::process::Command::new(&prepared.argv[0])
                    .args(&prepared.argv[1..])
                    .envs(prepared.env.iter().map(|(k, v)| (k, v)))
                    .current_dir(dir.path())
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                ran += 1;
                assert!(
                    !dir.path().join("PWNED").exists(),
                    "{shell} ran the value {sender:?} of script:\n{script}\nrewritten:\n{}",
                    prepared.argv[2].to_string_lossy()
                );
            }
        }
    }
    // Both outcomes are exercised: refusal alone would prove nothing.
    assert!(refused > 20 && ran > 200, "refused {refused}, ran {ran}");
}

/// A message read before Verify (for a header macro) is written to the Fallback from where
/// it is, not from a copy: peak RSS grows by the message (its mapping, read through) and
/// not by twice it.
#[test]
fn a_message_read_early_reaches_the_fallback_without_a_copy() {
    let s = Setup::new(
        "Verify = SELECT name, folder FROM users WHERE name = '$local' AND '$subject' <> ''\n\
         Deliver = INSERT INTO mail (recipient, body) VALUES ($1, $message)\n\
         Fallback = /bin/sh -c \"cat >/dev/null\"",
        "",
    );
    let peak = |len: usize| {
        let mut body = b"Subject: big\n\n".to_vec();
        body.extend(pseudo_random(len));
        s.run().args(["-l", "carol"]).stdin(body).peak_rss_kb(0)
    };
    let (small, large) = (peak(1 << 20), peak(16 << 20));
    // 15 MiB more message, read through its mapping; a copy would add 15 MiB more.
    assert!(
        large - small <= (15 + 4) * 1024,
        "peak RSS {small} KiB at 1 MiB, {large} KiB at 16 MiB"
    );
}
