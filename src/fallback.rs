//! The `Fallback` command, run for recipients `Verify` does not know.
//!
//! The command line is split into words *before* any macro is expanded, so a value can never
//! add, remove or re-quote a word, and no shell is involved unless the administrator wrote
//! one. For the documented form `/bin/sh -c "procmail -f $sender -d $local"`, the script is
//! rewritten so that each macro becomes a quoted reference to an environment variable
//! (`"${VIRT_MAIL_SENDER}"`) whose value is the data: the shell expands it at run time and
//! never parses it as code, whatever quotes, `$()`, backticks, `;` or newlines it holds.
//! Only defined macros are touched; `$HOME` or `$LOCAL` stay for the shell, as before.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::exit::{ExitCode, from_raw};
use crate::macros::{Macros, Token, tokens};
use crate::signals;

mod code;
mod sh;

use sh::Place;

/// Most bytes of a Fallback's stdout/stderr passed on; the rest is read and dropped, so a
/// flooding child neither blocks nor floods the MTA's bounce.
const OUTPUT_CAP: usize = 64 * 1024;
/// How long a killed Fallback gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for output pipes after the Fallback exited (a background grandchild
/// may hold them open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A parsed `Fallback` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackCommand {
    words: Vec<String>,
    /// The word a shell runs as a script (`sh -c SCRIPT`, `su -cSCRIPT`), if any.
    script: Option<code::Code>,
}

/// The command ready to start: arguments and the variables that carry macro values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub argv: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
}

/// How the Fallback ended.
#[derive(Debug)]
pub enum Outcome {
    /// It ran: its status as a sysexits code (non-sysexits statuses are EX_SOFTWARE), and
    /// the status as it exited, for the log.
    Exited { code: ExitCode, status: i32 },
    /// It does not exist or may not be run: the recipient is bounced as unknown.
    CannotRun(io::Error),
}

impl FallbackCommand {
    /// Splits the line into words: blanks separate, `'…'` is literal, `"…"` and `\` quote as
    /// in sh. Macros are not allowed in the program name (a sender must not pick the program).
    pub fn parse(line: &str) -> Result<FallbackCommand, String> {
        let words = split_words(line)?;
        let Some(program) = words.first() else {
            return Err("empty command".into());
        };
        if tokens(program).any(|t| matches!(t, Token::Macro { .. })) {
            return Err("macros are not allowed in the program name".into());
        }
        let script = code::script_of(&words)?;
        Ok(FallbackCommand { words, script })
    }

    pub fn program(&self) -> &str {
        &self.words[0]
    }

    /// Whether a macro appears anywhere in the command.
    pub fn uses(&self, name: &str) -> bool {
        self.words
            .iter()
            .any(|w| tokens(w).any(|t| matches!(t, Token::Macro { name: n, .. } if n == name)))
    }

    /// Which word a shell runs as a script, if any (it gets the variable rewrite).
    pub fn script_index(&self) -> Option<usize> {
        self.script.as_ref().map(|s| s.word)
    }

    /// Expands defined macros: as plain argument text, or, in a shell script, as references
    /// to `VIRT_MAIL_<NAME>` variables that hold the values.
    pub fn prepare(&self, macros: &Macros<'_>) -> Prepared {
        let mut env: Vec<(String, OsString)> = Vec::new();
        let argv = self
            .words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                match &self.script {
                    // The option's own text before an attached script (`-c`, `--command=`).
                    Some(s) if s.word == i => OsString::from(format!(
                        "{}{}",
                        &word[..s.offset],
                        rewrite_script(&word[s.offset..], macros, &mut env)
                    )),
                    _ => expand_argument(word, macros),
                }
            })
            .collect();
        Prepared { argv, env }
    }
}

/// sh-like word splitting of the configured line (no expansion of any kind).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated '…' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '`')) => w.push(e),
                            Some(e) => {
                                w.push('\\');
                                w.push(e);
                            }
                            None => return Err("unterminated \"…\" quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated \"…\" quote".into()),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                if let Some(e) = chars.next() {
                    w.push(e);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Ok(words)
}

/// A non-script argument: each defined macro is replaced by its value; the word stays one
/// argument whatever the value holds.
fn expand_argument(word: &str, macros: &Macros<'_>) -> OsString {
    let mut out = Vec::with_capacity(word.len());
    for token in tokens(word) {
        match token {
            Token::Text(t) => out.extend_from_slice(t.as_bytes()),
            Token::Macro { name, raw } => match macros.get(name) {
                Some(v) => out.extend_from_slice(v.as_bytes()),
                None => out.extend_from_slice(raw.as_bytes()),
            },
        }
    }
    OsString::from_vec(out)
}

/// The shell-safe rewrite: `$name` → `"${VIRT_MAIL_NAME}"`, closing and reopening any quote
/// the macro sits in, and the value goes into the environment.
fn rewrite_script(script: &str, macros: &Macros<'_>, env: &mut Vec<(String, OsString)>) -> String {
    let mut out = String::with_capacity(script.len() + 32);
    let mut reader = sh::Reader::default();
    for token in tokens(script) {
        match token {
            Token::Text(text) => reader.read(text, |piece, _| out.push_str(piece)),
            Token::Macro { name, raw } => {
                // A backslash before `$name` makes it literal for the shell; in a comment or
                // a quoted here-document nothing is expanded.
                let (place, escaped) = reader.place_macro(raw);
                let value = macros.get(name).filter(|_| !escaped);
                let Some(value) = value.filter(|_| place != Place::Inert) else {
                    out.push_str(raw);
                    continue;
                };
                let var = format!("VIRT_MAIL_{}", name.to_ascii_uppercase());
                if !env.iter().any(|(k, _)| *k == var) {
                    env.push((var.clone(), OsString::from_vec(value.as_bytes().to_vec())));
                }
                match place {
                    Place::Double => out.push_str(&format!("${{{var}}}")),
                    Place::Single => out.push_str(&format!("'\"${{{var}}}\"'")),
                    // Arithmetic is refused when the line is read (`code::check_script`).
                    _ => out.push_str(&format!("\"${{{var}}}\"")),
                }
            }
        }
    }
    out
}

/// What the Fallback reads on standard input.
pub enum Input {
    /// Our own standard input, not yet read: the child reads the message directly.
    Inherit,
    /// The message, already read (and kept until the process exits: no copy for the
    /// thread that writes it to the child's stdin).
    Bytes(&'static [u8]),
}

/// Starts the Fallback with `RECIPIENT` and the macro variables in its environment, passes
/// its output on (capped), and waits at most `timeout`; past it the process group is killed
/// and the mail deferred.
pub fn run(
    prepared: &Prepared,
    recipient: &str,
    input: Input,
    timeout: Duration,
) -> Result<Outcome, Error> {
    let program = prepared.argv[0].to_string_lossy().into_owned();
    let mut command = Command::new(&prepared.argv[0]);
    command
        .args(&prepared.argv[1..])
        .envs(prepared.env.iter().map(|(k, v)| (k, v)))
        .stdin(match input {
            Input::Inherit => Stdio::inherit(),
            Input::Bytes(_) => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if std::env::var_os("RECIPIENT").is_none() {
        command.env("RECIPIENT", recipient);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if cannot_run(&e) => return Ok(Outcome::CannotRun(e)),
        Err(source) => return Err(Error::FallbackStart { program, source }),
    };
    signals::set_child_group(child.id() as i32);
    let drains = start_drains(&mut child);
    let feeder = match (input, child.stdin.take()) {
        (Input::Bytes(bytes), Some(mut stdin)) => {
            Some(thread::spawn(move || {
                // A child that stops reading early gets EPIPE here; its status decides.
                let _ = stdin.write_all(bytes);
            }))
        }
        _ => None,
    };
    let status = wait_with_timeout(child, timeout);
    signals::set_child_group(0);
    let drain_deadline = Instant::now() + DRAIN_GRACE;
    for done in drains {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        let _ = done.recv_timeout(left);
    }
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    match status {
        Ok(status) => classify(status, &program),
        Err(reason) => Err(Error::FallbackFailed { program, reason }),
    }
}

/// "Does not exist or may not be run": the documented cases that fall through to a bounce.
fn cannot_run(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOEXEC | nix::libc::ENOTDIR | nix::libc::EISDIR | nix::libc::ELOOP)
    )
}

fn classify(status: ExitStatus, program: &str) -> Result<Outcome, Error> {
    if let Some(code) = status.code() {
        return Ok(Outcome::Exited {
            code: from_raw(code),
            status: code,
        });
    }
    let signal = status.signal().unwrap_or(0);
    Err(Error::FallbackFailed {
        program: program.to_string(),
        reason: format!("killed by signal {signal}"),
    })
}

/// Copies the child's stdout and stderr to ours on their own threads; each sends on its
/// channel when the pipe closes.
fn start_drains(child: &mut Child) -> Vec<mpsc::Receiver<()>> {
    let mut done = Vec::new();
    if let Some(out) = child.stdout.take() {
        done.push(drain(out, io::stdout));
    }
    if let Some(err) = child.stderr.take() {
        done.push(drain(err, io::stderr));
    }
    done
}

fn drain<R, W>(mut from: R, to: fn() -> W) -> mpsc::Receiver<()>
where
    R: Read + Send + 'static,
    W: Write + 'static,
{
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut passed = 0usize;
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let keep = n.min(OUTPUT_CAP - passed);
                    if keep > 0 {
                        let _ = to().write_all(&buf[..keep]);
                        passed += keep;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = to().flush();
        let _ = tx.send(());
    });
    rx
}

/// Waits for the child; past the deadline, SIGTERM then SIGKILL to its whole process group.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> Result<ExitStatus, String> {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let kill = |sig| unsafe { nix::libc::kill(-pid, sig) };
    match rx.recv_timeout(timeout) {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("wait failed: {e}")),
        Err(_) => {
            kill(nix::libc::SIGTERM);
            if rx.recv_timeout(KILL_GRACE).is_err() {
                kill(nix::libc::SIGKILL);
                let _ = rx.recv_timeout(KILL_GRACE);
            }
            Err(format!(
                "timed out after {} s and was killed",
                timeout.as_secs()
            ))
        }
    }
}

/// Shows a prepared command for `--debug`.
pub fn describe(prepared: &Prepared) -> String {
    let words: Vec<String> = prepared
        .argv
        .iter()
        .map(|w| format!("{:?}", String::from_utf8_lossy(w.as_bytes())))
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macros() -> Macros<'static> {
        Macros {
            local: "alice",
            domain: "example.com",
            sender: "bob@example.org",
            ..Macros::default()
        }
    }

    fn argv(p: &Prepared) -> Vec<String> {
        p.argv
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn words_split_like_sh() {
        assert_eq!(
            split_words(r#"/bin/sh -c "procmail -f $sender" 'a b' c\ d "\"q\"""#).unwrap(),
            [
                "/bin/sh",
                "-c",
                "procmail -f $sender",
                "a b",
                "c d",
                "\"q\""
            ]
        );
        assert!(split_words("sh -c \"open").is_err());
        assert!(split_words("sh 'open").is_err());
    }

    #[test]
    fn the_documented_shell_form_uses_variables() {
        let c = FallbackCommand::parse(r#"/bin/sh -c "procmail -f $sender -d $local""#).unwrap();
        let p = c.prepare(&macros());
        assert_eq!(
            argv(&p),
            [
                "/bin/sh",
                "-c",
                r#"procmail -f "${VIRT_MAIL_SENDER}" -d "${VIRT_MAIL_LOCAL}""#
            ]
        );
        assert_eq!(
            p.env,
            [
                (
                    "VIRT_MAIL_SENDER".to_string(),
                    OsString::from("bob@example.org")
                ),
                ("VIRT_MAIL_LOCAL".to_string(), OsString::from("alice")),
            ]
        );
    }

    #[test]
    fn macros_inside_script_quotes_stay_quoted() {
        let c = FallbackCommand::parse(r#"sh -ec "echo '$sender' \"$local\" ${domain}x $HOME""#)
            .unwrap();
        let p = c.prepare(&macros());
        assert_eq!(
            argv(&p)[2],
            r#"echo ''"${VIRT_MAIL_SENDER}"'' "${VIRT_MAIL_LOCAL}" "${VIRT_MAIL_DOMAIN}"x $HOME"#
        );
    }

    #[test]
    fn shells_behind_wrappers_are_found() {
        for line in [
            "env LANG=C /bin/bash -c 'x $local'",
            "nice -n 5 dash -xc 'x $local'",
        ] {
            let p = FallbackCommand::parse(line).unwrap().prepare(&macros());
            assert!(
                argv(&p).last().unwrap().contains("${VIRT_MAIL_LOCAL}"),
                "{line}"
            );
        }
        for line in [
            "bash -o pipefail -c 'x $local'",
            "bash --norc -xc 'x $local'",
            "/bin/su -s /bin/sh mail -c 'x $local'",
            "runuser -u mail -- /bin/sh -c 'x $local'",
        ] {
            let p = FallbackCommand::parse(line).unwrap().prepare(&macros());
            assert!(
                argv(&p).last().unwrap().contains("${VIRT_MAIL_LOCAL}"),
                "{line}"
            );
        }
        // A script file with arguments: they are positional parameters, plain data.
        let c = FallbackCommand::parse("/bin/sh /usr/local/bin/deliver $local").unwrap();
        assert_eq!(c.script_index(), None);
        let c = FallbackCommand::parse("/usr/bin/procmail -f $sender -d $local").unwrap();
        assert_eq!(c.script_index(), None);
        assert_eq!(
            argv(&c.prepare(&macros())),
            ["/usr/bin/procmail", "-f", "bob@example.org", "-d", "alice"]
        );
    }

    #[test]
    fn hostile_values_stay_one_argument() {
        let m = Macros {
            sender: "x $(touch /tmp/p) `id`; a\"b",
            ..macros()
        };
        let p = FallbackCommand::parse("/usr/bin/procmail -f $sender")
            .unwrap()
            .prepare(&m);
        assert_eq!(
            argv(&p),
            ["/usr/bin/procmail", "-f", "x $(touch /tmp/p) `id`; a\"b"]
        );
    }

    #[test]
    fn undefined_macros_are_left_for_the_shell() {
        let p = FallbackCommand::parse("deliver $LOCAL $1 $HOME/x $local")
            .unwrap()
            .prepare(&macros());
        assert_eq!(argv(&p), ["deliver", "$LOCAL", "$1", "$HOME/x", "alice"]);
    }

    /// A macro in text that a second interpreter parses would be expanded as data by the
    /// first shell, then run as code by the second: refused when the file is read.
    #[test]
    fn macros_handed_on_to_a_second_interpreter_are_refused() {
        for (line, names) in [
            (
                r#"/bin/sh -c "su mail -c '/usr/bin/procmail -f $sender'""#,
                "su",
            ),
            (r#"/bin/sh -c "sh -c 'echo $sender'""#, "sh"),
            (r#"sh -c "su mail -c \"procmail -f $sender\"""#, "su"),
            (
                r#"sh -c 'x; exec /bin/bash -c "y $local" && z'"#,
                "/bin/bash",
            ),
            ("sh -c 'eval procmail -f $sender'", "eval"),
            ("sh -c 'command eval \"x ${domain}\"'", "eval"),
            ("sh -c 'exec ssh mailhost procmail -f $sender'", "ssh"),
            ("sh -c 'timeout 5 perl -e \"print q($subject)\"'", "perl -e"),
            ("/usr/bin/ssh mailhost /usr/bin/procmail -f $sender", "ssh"),
            (r#"/bin/tcsh -c "procmail -f $sender""#, "tcsh -c"),
            ("env fish --command 'deliver $recipient'", "fish --command"),
            ("perl -we 'deliver(\"$local\")'", "perl -we"),
            ("python3 -c 'print(\"$ext\")'", "python3 -c"),
            ("perl -w -e 'warn 1' -e 'print q($sender)'", "perl -e"),
        ] {
            let err = FallbackCommand::parse(line).expect_err(line);
            assert!(err.contains(&format!("`{names}")), "{line}: {err}");
        }
    }

    /// Where the shell reads a value as code although the first shell expands it as data:
    /// evaluators behind reserved words and inside `"$(…)"`, after a comment with a quote
    /// in it, bash's arithmetic and names, the command's name, and standard input.
    #[test]
    fn macros_the_shell_would_read_as_code_are_refused() {
        for (line, what) in [
            (r#"sh -c 'x="$(eval echo $sender)"; procmail'"#, "`eval`"),
            ("sh -c 'if true; then eval echo $sender; fi'", "`eval`"),
            ("sh -c 'while :; do eval $sender; done'", "`eval`"),
            (
                "sh -c \"# it's a \\\"comment\n eval echo $sender\"",
                "`eval`",
            ),
            ("sh -c 'x=`eval echo $sender`'", "`eval`"),
            ("sh -c 'echo \"`sh -c \"echo $sender\"`\"'", "second shell"),
            ("bash -c 'echo $(( $local + 1 ))'", "arithmetic"),
            (
                "bash -c 'for ((i = 0; i < $local; i++)); do :; done'",
                "arithmetic",
            ),
            ("bash -c 'a[$local]=1'", "arithmetic"),
            ("bash -c 'b=([$local]=1)'", "arithmetic"),
            ("bash -c 'echo ${a[$local]} ${x:$local}'", "arithmetic"),
            ("sh -c 'cat <<EOF\n$(( $local ))\nEOF'", "arithmetic"),
            ("bash -c '[[ $local -eq 1 ]]'", "`[[`"),
            ("bash -c 'test -v \"$local\"'", "`test`"),
            ("bash -c 'printf -v $local %s x'", "`printf`"),
            ("bash -c 'read -r $local'", "`read`"),
            ("bash -c 'declare \"$local=1\"'", "`declare`"),
            ("bash -c 'local -i n=$local'", "`local`"),
            ("bash -c 'let n=$local'", "`let`"),
            ("sh -c 'trap \"logger $sender\" EXIT'", "`trap`"),
            ("sh -c '. /etc/mail/$local'", "`.`"),
            ("sh -c '$sender -x'", "name the command"),
            ("sh -c 'X=1 \"${local}\"'", "name the command"),
            (
                "sh -c 'echo \"$sender\" | sh'",
                "`sh` on its standard input",
            ),
            (
                "sh -c 'printf %s $sender | tee x | /bin/bash -s'",
                "`/bin/bash` on its",
            ),
            ("sh -c 'echo $local | timeout 5 perl'", "`perl` on its"),
            ("sh -c 'echo $local | psql mail'", "`psql` on its"),
            ("sh -c 'cat <<EOF | sh\n$sender\nEOF'", "`sh` on its"),
            ("sh -c 'echo $local | sudo -u mail sh'", "`sh` on its"),
            (
                "sh -c 'echo $local | flock /run/x.lock bash'",
                "`bash` on its",
            ),
            (
                "sh -c 'echo $local | timeout -s KILL 5 perl'",
                "`perl` on its",
            ),
            (
                "sh -c 'echo $local | xargs -I{} sh -c \"echo {}\"'",
                "`xargs` on its",
            ),
            (
                "sh -c 'mysql mail <<-E\n\tINSERT $sender\n\tE'",
                "`mysql` on its",
            ),
        ] {
            let err = FallbackCommand::parse(line).expect_err(line);
            assert!(
                err.contains(what) && err.contains("as code"),
                "{line}: {err}"
            );
        }
    }

    /// The same shapes with the value where it is data.
    #[test]
    fn macros_where_the_shell_keeps_them_data_are_accepted() {
        for line in [
            "sh -c 'if [ \"$local\" = postmaster ]; then procmail -d root; fi'",
            "bash -c '[[ $local == post* ]] && procmail -d $local'",
            "sh -c 'case $local in postmaster) procmail -d root;; *) procmail -d $local;; esac'",
            "sh -c 'for x in $local; do procmail -d \"$x\"; done'",
            "sh -c 'export SENDER=$sender; local=$local procmail'",
            "bash -c 'f() { local s=$sender; procmail -f \"$s\"; }; f'",
            "sh -c 'echo $sender | procmail -d $local'",
            "sh -c 'echo \"$(printf %s $sender)\" | sh /etc/mail/script'",
            "sh -c \"x=\\$(( 1 + 2 )); procmail -d $local # it's $local\"",
            "sh -c 'echo ${x:-$sender} \"${x#$local}\"'",
            "sh -c 'cat <<EOF | mail -s unknown postmaster\nNo mailbox $local\nEOF'",
            "sh -c \"cat <<'EOF' | sh\nno macro here: \\$sender\nEOF\"",
            "sh -c 'echo $local | perl /usr/local/bin/deliver'",
            "sh -c 'echo $local | xargs -0 procmail -d'",
            "sh -c 'echo $sender | sudo -u mail procmail -d alice'",
            "sh -c 'echo $local | python3 -c \"import sys; print(sys.stdin.read())\"'",
        ] {
            if let Err(e) = FallbackCommand::parse(line) {
                panic!("{line}: {e}");
            }
        }
    }

    #[test]
    fn the_rewrite_follows_substitutions_comments_and_here_documents() {
        for (line, want) in [
            (
                "sh -c 'echo \"$(printf [%s] $sender)\"'",
                r#"echo "$(printf [%s] "${VIRT_MAIL_SENDER}")""#,
            ),
            (
                "sh -c 'echo \"`printf [%s] $sender`\"'",
                r#"echo "`printf [%s] "${VIRT_MAIL_SENDER}"`""#,
            ),
            (
                "sh -c '# the \"x\n echo $sender'",
                "# the \"x\n echo \"${VIRT_MAIL_SENDER}\"",
            ),
            (
                "sh -c \"cat <<EOF\nit's $sender\nEOF\necho $local\"",
                "cat <<EOF\nit's ${VIRT_MAIL_SENDER}\nEOF\necho \"${VIRT_MAIL_LOCAL}\"",
            ),
            (
                "sh -c 'echo ${x:-$sender} \"${x:-$local}\"'",
                r#"echo ${x:-"${VIRT_MAIL_SENDER}"} "${x:-${VIRT_MAIL_LOCAL}}""#,
            ),
        ] {
            let p = FallbackCommand::parse(line).unwrap().prepare(&macros());
            assert_eq!(argv(&p)[2], want, "{line}");
        }
    }

    #[test]
    fn macros_as_data_of_a_second_interpreter_are_accepted() {
        for line in [
            // The inner script's positional parameters, and the environment.
            r#"/bin/sh -c "sh -c 'procmail -f \"\$1\"' sh \"$sender\"""#,
            r#"/bin/sh -c "su mail -c 'procmail -f \"\$SENDER\"'""#,
            // Escaped: the shell's own variable, not a macro.
            r#"sh -c "su mail -c \"procmail -f \$sender\"""#,
            // A second command of the script, after the macro's own.
            "sh -c 'procmail -f $sender; su root -c logger || sh -c true'",
            // Scripts and programs given as files, with the values as their arguments.
            "perl /usr/local/bin/deliver.pl $sender",
            // After the code: the program's own arguments (@ARGV, sys.argv).
            "perl -we 'deliver($ARGV[0])' $sender",
            "sh -c 'python3 -c \"import sys; print(sys.argv[1])\" \"$local\"'",
            "perl -I/usr/share/perl5 -w deliver.pl -f $sender",
            "python3 /usr/local/bin/deliver -- $local",
            "ssh-keygen -l -f /etc/keys/$local",
            "/usr/bin/ssh mailhost /usr/bin/true",
            // Undefined in a Fallback: left for the shell.
            r#"sh -c "sh -c 'echo $1 $HOME $message'""#,
        ] {
            assert!(FallbackCommand::parse(line).is_ok(), "{line}");
        }
    }

    #[test]
    fn flock_runs_its_command_as_a_script() {
        let c =
            FallbackCommand::parse("/usr/bin/flock -w 5 /run/x.lock -c 'deliver $sender'").unwrap();
        assert_eq!(
            argv(&c.prepare(&macros()))[5],
            r#"deliver "${VIRT_MAIL_SENDER}""#
        );
        for shell in ["ksh93", "rbash", "lksh", "hush"] {
            let c = FallbackCommand::parse(&format!("{shell} -c 'x $local'")).unwrap();
            assert_eq!(c.script_index(), Some(2), "{shell}");
        }
    }

    #[test]
    fn program_name_may_not_hold_macros() {
        assert!(FallbackCommand::parse("/usr/lib/$local -x").is_err());
        assert!(FallbackCommand::parse("   ").is_err());
    }
}
