//! Where a Fallback command line runs code: the script of an sh (`sh -c`, `su -c`), which
//! gets the safe rewrite, or code in another language (`perl -e`, `sed`'s script, `ssh`'s
//! remote command …), where a macro cannot be made safe and is a configuration error.
//!
//! A list of known programs and of how their options read, erring towards finding code: a
//! word taken for code by mistake costs at most a refused line, code taken for data lets a
//! sender in. What is not on the list (a script in a file) is the administrator's to keep
//! safe, as the man page says.

use std::path::Path;

use super::sh::{self, Place};
use crate::macros::{Token, tokens};

/// Shells of the sh family: their `-c` argument is a script, where `"${VAR}"` is data
/// whatever VAR holds (the word gets the safe rewrite).
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "ksh", "mksh", "pdksh", "zsh", "yash", "posh", "ksh93", "rbash",
    "rksh", "lksh", "oksh", "loksh", "hush",
];

/// A program that takes code in its arguments, and how its options read.
struct Program {
    names: &'static [&'static str],
    /// Its code is an sh script (`su -c`, run with `sh -c`): it gets the rewrite.
    sh: bool,
    /// It runs the command in its other arguments (`env`, `flock`, `su`): without code of
    /// its own, the search goes on past it.
    wrapper: bool,
    /// Every argument is code (`ssh` joins them into a command for the remote shell).
    all: bool,
    /// Its code options are whole words only (`flock FILE -c CMD`: no getopt forms).
    exact: bool,
    /// Its options end at the first operand (`env`: the rest is the command it runs).
    options_first: bool,
    /// Options whose argument is code: short letters (`-eCODE`, `-e CODE`, also ending a
    /// cluster: `-le CODE`) and long names (`--eval=CODE`, `--eval CODE`, or a prefix).
    short: &'static str,
    long: &'static [&'static str],
    /// Options known to take an argument that is not code, so that it is not read as
    /// options or as the first operand. Only sure ones: a wrong entry could hide code.
    short_arg: &'static str,
    long_arg: &'static [&'static str],
    /// awk, sed: the options that name a program file; without one of them or a code
    /// option, the first operand is the program.
    files: Option<(&'static str, &'static [&'static str])>,
}

const NONE: Program = Program {
    names: &[],
    sh: false,
    wrapper: false,
    all: false,
    exact: false,
    options_first: false,
    short: "",
    long: &[],
    short_arg: "",
    long_arg: &[],
    files: None,
};

const PROGRAMS: &[Program] = &[
    Program {
        names: &["su", "runuser"],
        sh: true,
        wrapper: true,
        short: "c",
        long: &["command", "session-command"],
        short_arg: "gGswu",
        long_arg: &[
            "group",
            "supp-group",
            "shell",
            "whitelist-environment",
            "user",
        ],
        ..NONE
    },
    Program {
        names: &["flock"],
        sh: true,
        wrapper: true,
        exact: true,
        short: "c",
        long: &["command"],
        ..NONE
    },
    Program {
        names: &["script"],
        sh: true,
        wrapper: true,
        short: "c",
        long: &["command"],
        short_arg: "BEIOmoT",
        ..NONE
    },
    Program {
        names: &["env"],
        wrapper: true,
        options_first: true,
        short: "S",
        long: &["split-string"],
        short_arg: "uC",
        long_arg: &["unset", "chdir"],
        ..NONE
    },
    Program {
        names: &["csh", "tcsh", "bsd-csh"],
        short: "c",
        ..NONE
    },
    Program {
        names: &["fish"],
        short: "cC",
        long: &["command", "init-command"],
        ..NONE
    },
    Program {
        names: &["perl"],
        short: "eE",
        ..NONE
    },
    Program {
        names: &["python", "python2", "python3"],
        short: "c",
        short_arg: "WX",
        ..NONE
    },
    Program {
        names: &["ruby"],
        short: "e",
        short_arg: "CEIr",
        ..NONE
    },
    Program {
        names: &["php"],
        short: "rBRE",
        short_arg: "cdfzF",
        ..NONE
    },
    Program {
        names: &["node", "nodejs"],
        short: "ep",
        long: &["eval", "print"],
        short_arg: "r",
        long_arg: &["require", "import"],
        ..NONE
    },
    Program {
        names: &["lua", "luajit", "Rscript", "expect"],
        short: "ec",
        ..NONE
    },
    Program {
        names: &["awk", "gawk", "mawk", "nawk", "original-awk"],
        short: "e",
        long: &["source"],
        short_arg: "FvfEilW",
        long_arg: &[
            "field-separator",
            "assign",
            "file",
            "exec",
            "include",
            "load",
        ],
        files: Some(("fE", &["file", "exec"])),
        ..NONE
    },
    Program {
        names: &["sed", "gsed"],
        short: "e",
        long: &["expression"],
        short_arg: "fl",
        long_arg: &["file", "line-length"],
        files: Some(("f", &["file"])),
        ..NONE
    },
    Program {
        names: &["ssh"],
        all: true,
        ..NONE
    },
];

/// Code in a command line: the word at `word`, from byte `offset` (after `-c` in
/// `su -cSCRIPT`), given by `option` (empty for an operand).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Code {
    pub word: usize,
    pub offset: usize,
    option: String,
}

/// Where a command line runs code.
#[derive(Debug, PartialEq, Eq)]
enum Evaluator {
    /// An sh script (run by the program at `program`): it gets the variable rewrite.
    Sh { program: usize, script: Code },
    /// Code in another language, or more than one script (`what` says which).
    Other { code: Vec<Code>, what: String },
}

/// Checks a parsed line: the sh script macros are rewritten in, if any; an error where a
/// macro would reach code that the rewrite cannot make safe.
pub(super) fn script_of(words: &[String]) -> Result<Option<Code>, String> {
    match find_evaluator(words) {
        Some(Evaluator::Sh { script, .. }) => {
            check_script(&words[script.word][script.offset..])?;
            Ok(Some(script))
        }
        Some(Evaluator::Other { code, what }) => {
            match code
                .iter()
                .flat_map(|c| macros_in(&words[c.word][c.offset..]))
                .next()
            {
                Some(name) => Err(format!(
                    "${name} would reach {what}, which parses it as code; macros are safe \
                     only as plain arguments and in a /bin/sh -c script"
                )),
                None => Ok(None),
            }
        }
        None => Ok(None),
    }
}

/// Finds the first program in the words that runs code: `SHELL [options] -c SCRIPT` (also
/// behind `env`, `nice`, `sudo` …) or one of `PROGRAMS`. The first one found decides; a
/// program that runs a file stops the search (the words after it are that file's arguments).
fn find_evaluator<S: AsRef<str>>(words: &[S]) -> Option<Evaluator> {
    for (at, word) in words.iter().enumerate() {
        let name = Path::new(word.as_ref())
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if SHELLS.contains(&name) {
            let word = shell_script_after(words, at + 1)?;
            return Some(Evaluator::Sh {
                program: at,
                script: Code {
                    word,
                    offset: 0,
                    option: "-c".into(),
                },
            });
        }
        let Some(program) = PROGRAMS.iter().find(|p| p.names.contains(&name)) else {
            continue;
        };
        let mut code = program.code_in(words, at + 1);
        match code.len() {
            0 if program.wrapper => continue,
            0 => return None,
            1 if program.sh => {
                return Some(Evaluator::Sh {
                    program: at,
                    script: code.remove(0),
                });
            }
            _ => {}
        }
        let what = match code[0].option.as_str() {
            "" => format!("`{name}` (its program)"),
            option if program.sh => format!("`{name} {option}` (given more than once)"),
            option => format!("`{name} {option}`"),
        };
        return Some(Evaluator::Other { code, what });
    }
    None
}

impl Program {
    /// The code in the words from `start` on, the arguments of this program. Every word is
    /// looked at, even past an operand, where the program's own arguments begin.
    fn code_in<S: AsRef<str>>(&self, words: &[S], start: usize) -> Vec<Code> {
        let at = |word: usize, offset: usize, option: &str| Code {
            word,
            offset,
            option: option.to_string(),
        };
        if self.all {
            return (start..words.len()).map(|w| at(w, 0, "")).collect();
        }
        let (file_short, file_long) = self.files.unwrap_or(("", &[]));
        let mut code = Vec::new();
        let mut operand = None;
        let mut program_file = false;
        let mut i = start;
        while let Some(word) = words.get(i) {
            let w = word.as_ref();
            i += 1;
            if w == "--" {
                if self.options_first {
                    break;
                }
                // The word after it is an operand, even if it looks like an option.
                if operand.is_none() && i < words.len() {
                    operand = Some(i);
                    i += 1;
                }
                continue;
            }
            if w == "-" || !w.starts_with('-') {
                if self.options_first {
                    break;
                }
                operand.get_or_insert(i - 1);
                continue;
            }
            if self.exact {
                let (short, long) = (w.strip_prefix('-'), w.strip_prefix("--"));
                let is_code = long.is_some_and(|l| self.long.contains(&l))
                    || short.is_some_and(|s| s.len() == 1 && self.short.contains(s));
                if is_code && i < words.len() {
                    code.push(at(i, 0, w));
                    i += 1;
                }
                continue;
            }
            if let Some(long) = w.strip_prefix("--") {
                let (name, value) = long.split_once('=').unwrap_or((long, ""));
                let has_value = long.contains('=');
                program_file |= file_long.contains(&name);
                if !name.is_empty() && self.long.iter().any(|l| l.starts_with(name)) {
                    let option = format!("--{name}");
                    if has_value {
                        code.push(at(i - 1, w.len() - value.len(), &option));
                    } else if i < words.len() {
                        code.push(at(i, 0, &option));
                        i += 1;
                    }
                } else if !has_value && self.long_arg.contains(&name) {
                    i += 1;
                }
                continue;
            }
            // A cluster of short options: `-le CODE`, `-eCODE`, `-wI/dir`.
            for (offset, c) in w.char_indices().skip(1) {
                let rest = offset + c.len_utf8();
                if self.short.contains(c) {
                    if rest < w.len() {
                        code.push(at(i - 1, rest, &w[..rest]));
                    } else if i < words.len() {
                        code.push(at(i, 0, w));
                        i += 1;
                    }
                    break;
                }
                program_file |= file_short.contains(c);
                if self.short_arg.contains(c) {
                    if rest == w.len() {
                        i += 1;
                    }
                    break;
                }
            }
        }
        if self.files.is_some() && code.is_empty() && !program_file {
            code.extend(operand.map(|o| at(o, 0, "")));
        }
        code
    }
}

/// Refuses an sh script where the value of a macro would be read as code. The rewrite makes
/// the first shell expand it as data, but into text that a second interpreter parses
/// (`sh -c "su mail -c '… $sender'"`, `eval`, `ssh` …, or one reading the value on its
/// standard input), that bash evaluates as arithmetic or as a variable's name, or as the
/// name of the command to run.
fn check_script(script: &str) -> Result<(), String> {
    let (commands, documents) = sh::commands(script, defined_in_fallback);
    for command in &commands {
        let words = &command.words;
        let mut macros = words.iter().flat_map(|w| &w.macros);
        if let Some((name, _)) = macros.clone().find(|(_, p)| *p == Place::Arithmetic) {
            return Err(format!(
                "${name} would reach an arithmetic expression, a subscript or a parameter's \
                 name in the shell script (`$((…))`, `((…))`, `a[…]`, `${{x:…}}`), where bash \
                 reads its value as code (an expression, and runs the commands substituted \
                 in it); {}",
                as_data(name)
            ));
        }
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        let Some(first) = command_name(&texts) else {
            continue;
        };
        if let Some((name, _)) = words[first].macros.first() {
            return Err(format!(
                "${name} would name the command the shell script runs, and so run its \
                 value as code; {}",
                as_data(name)
            ));
        }
        let Some(name) = macros.next().map(|(name, _)| name) else {
            continue;
        };
        if let Some(what) = evaluates_its_words(&texts[first..], words) {
            return Err(format!(
                "${name} would reach {what} inside the shell script, which would read its \
                 value as code; {}",
                as_data(name)
            ));
        }
        let evaluator = match texts[first] {
            "eval" => Some(Evaluator::Other {
                code: (first + 1..texts.len())
                    .map(|word| Code {
                        word,
                        offset: 0,
                        option: String::new(),
                    })
                    .collect(),
                what: "`eval`".into(),
            }),
            _ => find_evaluator(&texts),
        };
        // An inner script's own words after it are its positional parameters: data.
        let (code, what, instead) = match evaluator {
            Some(Evaluator::Sh { program, script }) => (
                vec![script],
                format!("a second shell (`{} … -c`)", texts[program]),
                "pass it there as an argument after the inner script (sh -c '… \"$1\" …' sh \
                 $NAME)",
            ),
            Some(Evaluator::Other { code, what }) => (
                code,
                what,
                "give it to that program as data, never inside its code (not even as \"$1\"): \
                 as an argument after the code (perl -e '…' \"$NAME\") or a variable (awk -v \
                 var=\"$NAME\")",
            ),
            None => continue,
        };
        // The macros of the whole word: an option's own text (`-c`, `--eval=`) holds none.
        if let Some((name, _)) = code.iter().flat_map(|c| &words[c.word].macros).next() {
            let instead = instead.replace("NAME", name);
            return Err(format!(
                "${name} would reach {what} inside the shell script, which would parse its \
                 value as code; {instead}, or read it from the environment (SENDER, LOCAL, \
                 HOST, RECIPIENT)"
            ));
        }
    }
    // What a command writes, the next one in its pipeline reads; a here-document, its own.
    for reader in &commands {
        let texts: Vec<&str> = reader.words.iter().map(|w| w.text.as_str()).collect();
        let Some(program) = command_name(&texts).and_then(|at| reads_code_on_stdin(&texts[at..]))
        else {
            continue;
        };
        let pipeline = |pipeline: usize, position: usize| {
            pipeline == reader.pipeline && position <= reader.position
        };
        let written = commands
            .iter()
            .filter(|c| pipeline(c.pipeline, c.position) && c.position < reader.position)
            .flat_map(|c| c.words.iter().flat_map(|w| &w.macros))
            .map(|(name, _)| *name);
        let documented = documents
            .iter()
            .filter(|d| pipeline(d.pipeline, d.position))
            .map(|d| d.name);
        if let Some(name) = written.chain(documented).next() {
            return Err(format!(
                "${name} would reach `{program}` on its standard input in the shell script, \
                 which it reads as code; {}",
                as_data(name)
            ));
        }
    }
    Ok(())
}

/// The advice for a value the shell script would read as code whatever way it came in.
fn as_data(name: &str) -> String {
    format!(
        "there it would be code however it reached the script (as \"$1\" or from the \
         environment alike), so keep it a plain argument of a program or a string compared \
         ([ \"${name}\" = … ])"
    )
}

/// The command a simple command runs: its first word after assignments, reserved words and
/// `command`/`builtin`/`exec`; none for `case`, `for` and `select`, whose words are data.
fn command_name(texts: &[&str]) -> Option<usize> {
    let at = texts.iter().position(|w| {
        !matches!(
            *w,
            "!" | "{"
                | "}"
                | "if"
                | "then"
                | "else"
                | "elif"
                | "fi"
                | "do"
                | "done"
                | "while"
                | "until"
                | "time"
                | "esac"
                | "command"
                | "builtin"
                | "exec"
        ) && !is_assignment(w)
    })?;
    (!matches!(texts[at], "case" | "for" | "select" | "in")).then_some(at)
}

/// `NAME=value` (or `NAME+=value`) before a command, or as a declaration's argument.
fn is_assignment(word: &str) -> bool {
    let name = word.split_once('=').map_or("", |(n, _)| n);
    let name = name.strip_suffix('+').unwrap_or(name);
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Builtins that read their arguments (or some of them) as code, as arithmetic or as the
/// names of variables, where bash evaluates a subscript: what to call them, if `texts`
/// (from the command's name on) is one of them with a macro in such a place.
fn evaluates_its_words(texts: &[&str], words: &[sh::Word<'_>]) -> Option<String> {
    let name = texts[0];
    let options = || {
        texts[1..]
            .iter()
            .filter(|w| w.starts_with('-') && w.len() > 1)
    };
    let has = |option: &str| texts[1..].contains(&option);
    let evaluates = match name {
        "trap" | "." | "source" | "alias" | "let" | "read" | "mapfile" | "readarray"
        | "getopts" | "unset" => true,
        "printf" => has("-v"),
        "test" | "[" => has("-v") || has("-R"),
        "[[" => ["-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-v", "-R"]
            .iter()
            .any(|o| has(o)),
        // A value in a name, or in an integer's or a reference's value.
        "declare" | "typeset" | "local" | "readonly" | "export" => {
            options().any(|o| o.contains(['i', 'n']))
                || words[words.len() - texts.len() + 1..].iter().any(|w| {
                    !w.macros.is_empty()
                        && w.text.split('=').next().is_some_and(|n| n.contains('$'))
                })
        }
        _ => false,
    };
    evaluates.then(|| format!("`{name}`"))
}
/// Programs that read code on their standard input: a value written there by a command
/// before them in a pipeline (`echo "$sender" | sh`) or in a here-document is code.
/// `texts` from the command's name on; the program's name, if it is one of them.
fn reads_code_on_stdin<'a>(texts: &[&'a str]) -> Option<&'a str> {
    // Past wrappers that run the rest as a command: their options (with the arguments of
    // those that take one) and the operands before the command (`timeout 5`, `flock FILE`).
    let mut at = 0;
    while let Some(w) = texts.get(at) {
        let name = Path::new(w).file_name().and_then(|n| n.to_str());
        let Some(&(wrapper, with_argument, operands)) =
            name.and_then(|n| WRAPPERS.iter().find(|(wrapper, ..)| *wrapper == n))
        else {
            break;
        };
        let start = at;
        at += 1;
        let mut left = operands;
        while let Some(w) = texts.get(at) {
            if let Some(option) = w.strip_prefix('-').filter(|o| !o.is_empty()) {
                // `-u mail` takes the next word; `-umail` and `--user=mail` do not.
                let takes = option.len() == 1 && with_argument.contains(option);
                at += 1 + usize::from(takes);
            } else if is_assignment(w) && wrapper == "env" {
                at += 1;
            } else if left > 0 {
                left -= 1;
                at += 1;
            } else {
                break;
            }
        }
        // `xargs -I {} sh -c '… {} …'`: what it reads becomes text of a script.
        let replaces =
            |w: &&str| w.starts_with("-I") || w.starts_with("-i") || w.starts_with("--replace");
        if wrapper == "xargs"
            && texts[start..at].iter().any(replaces)
            && find_evaluator(&texts[at..]).is_some()
        {
            return Some(texts[start]);
        }
    }
    let program = *texts.get(at)?;
    let name = Path::new(program).file_name().and_then(|n| n.to_str())?;
    let rest = &texts[at + 1..];
    // An operand names a script file (`-` is standard input); a code option gives the code.
    let operand = rest.iter().any(|w| !w.starts_with('-'));
    let stdin = match name {
        "bc" | "dc" | "psql" | "mysql" | "mariadb" | "sqlite3" | "at" | "batch" | "ssh" => true,
        "su" | "runuser" => find_evaluator(texts).is_none(),
        "csh" | "tcsh" | "fish" | "perl" | "python" | "python2" | "python3" | "ruby" | "php"
        | "node" | "nodejs" | "lua" | "luajit" | "Rscript" | "expect" | "tclsh" => {
            !operand
                && find_evaluator(rest).is_none()
                && !rest
                    .iter()
                    .any(|w| w.starts_with("-e") || w.starts_with("-c"))
        }
        _ if SHELLS.contains(&name) => {
            !operand
                && !rest
                    .iter()
                    .any(|w| w.starts_with('-') && w[1..].contains('c'))
        }
        _ => false,
    };
    stdin.then_some(program)
}

/// Programs that run the command in their other words, for `reads_code_on_stdin`: the
/// short options that take the next word as their argument, and how many operands come
/// before the command.
const WRAPPERS: &[(&str, &str, usize)] = &[
    ("env", "uCS", 0),
    ("nice", "n", 0),
    ("nohup", "", 0),
    ("setsid", "", 0),
    ("stdbuf", "ioe", 0),
    ("ionice", "cnp", 0),
    ("timeout", "sk", 1),
    ("sudo", "ugCDhprtU", 0),
    ("doas", "uC", 0),
    ("chroot", "", 1),
    ("flock", "wEc", 1),
    ("xargs", "aEILnPsd", 0),
    ("time", "fo", 0),
];

/// The macros a word refers to that a Fallback may be given (the rest stay as written).
fn macros_in(word: &str) -> impl Iterator<Item = &str> {
    tokens(word).filter_map(|t| match t {
        Token::Macro { name, .. } if defined_in_fallback(name) => Some(name),
        _ => None,
    })
}

/// The macros defined when the Fallback runs: the envelope's and, when the message was read
/// before Verify, the headers' (`$1`… and `$message` never are: Verify found no row).
fn defined_in_fallback(name: &str) -> bool {
    matches!(name, "local" | "domain" | "sender" | "recipient" | "ext")
        || crate::headers::NAMES.contains(&name)
}

/// After a shell's name: its options, then the script if one of them was `-c`.
fn shell_script_after<S: AsRef<str>>(words: &[S], mut i: usize) -> Option<usize> {
    let mut has_c = false;
    while let Some(w) = words.get(i) {
        match w.as_ref() {
            "--" => {
                i += 1;
                break;
            }
            // Options that take the next word as their argument.
            "-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file" => i += 2,
            long if long.starts_with("--") => i += 1,
            short if (short.starts_with('-') || short.starts_with('+')) && short.len() > 1 => {
                has_c |= short[1..].contains('c');
                i += 1;
            }
            _ => break,
        }
    }
    (has_c && i < words.len()).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        super::super::split_words(line).unwrap()
    }

    fn script(line: &str) -> Option<(usize, String)> {
        let w = words(line);
        script_of(&w)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .map(|c| (c.word, w[c.word][c.offset..].to_string()))
    }

    #[test]
    fn attached_and_long_forms_of_a_script_option_are_scripts() {
        for (line, word, text) in [
            ("su mail -c'deliver $sender'", 2, "deliver $sender"),
            ("su -lc 'deliver $sender' mail", 2, "deliver $sender"),
            (
                "/bin/su -s /bin/sh -c 'deliver $sender' mail",
                4,
                "deliver $sender",
            ),
            ("su mail --command='deliver $sender'", 2, "deliver $sender"),
            (
                "runuser -u mail --session-command 'x $local'",
                4,
                "x $local",
            ),
            ("su mail --comm='x $local'", 2, "x $local"),
            ("flock -w 5 /run/x.lock --command 'x $local'", 5, "x $local"),
            ("script -q -O /dev/null -c 'x $local'", 5, "x $local"),
            // A wrapper without code of its own: the shell it runs.
            ("env -u HOME /bin/sh -c 'x $local'", 5, "x $local"),
            ("flock /run/x.lock sh -ec 'x $local'", 4, "x $local"),
        ] {
            assert_eq!(script(line), Some((word, text.to_string())), "{line}");
        }
    }

    #[test]
    fn code_options_in_every_form_are_refused_macros() {
        for (line, what) in [
            ("perl -e'print \"$sender\"'", "`perl -e`"),
            ("perl -lne 'print q($local)'", "`perl -lne`"),
            ("python3 -W ignore -c 'print(\"$local\")'", "`python3 -c`"),
            ("python3 -c'import os; print(\"$local\")'", "`python3 -c`"),
            ("ruby -rjson -e 'p \"$sender\"'", "`ruby -e`"),
            ("php -r'echo \"$sender\";'", "`php -r`"),
            ("php -R 'echo \"$sender\";'", "`php -R`"),
            ("node --eval='console.log(\"$sender\")'", "`node --eval`"),
            ("node -p '\"$sender\"'", "`node -p`"),
            ("fish -C 'set x $sender' -c true", "`fish -C`"),
            ("lua -e 'print(\"$sender\")'", "`lua -e`"),
            ("env -S 'procmail -f $sender'", "`env -S`"),
            (
                "env --split-string='procmail -f $sender'",
                "`env --split-string`",
            ),
            ("sed 's/^From: .*/From: $sender/'", "`sed` (its program)"),
            ("sed -n -e 's/x/$sender/p'", "`sed -e`"),
            ("sed --expression='s/x/$sender/'", "`sed --expression`"),
            (
                "gawk -v x=1 'BEGIN { print \"$sender\" }'",
                "`gawk` (its program)",
            ),
            ("awk -F: -- '{ print \"$local\" }'", "`awk` (its program)"),
            (
                "su mail -c true -c 'x $sender'",
                "`su -c` (given more than once)",
            ),
        ] {
            let err = script_of(&words(line)).expect_err(line);
            assert!(err.contains(what), "{line}: {err}");
        }
        // The same inside an sh script.
        for line in [
            "sh -c 'su mail -c\"procmail -f $sender\"'",
            "sh -c 'sed \"s/x/$sender/\" | procmail'",
            "sh -c 'awk \"{ print \\\"$local\\\" }\"'",
            "sh -c 'env -S \"procmail -f $sender\"'",
        ] {
            let err = script_of(&words(line)).expect_err(line);
            assert!(err.contains("inside the shell script"), "{line}: {err}");
        }
        // The advice fits the reader: "$1" is data to a second shell, not to sed.
        let err = script_of(&words("sh -c 'sed \"s/x/$sender/\"'")).unwrap_err();
        assert!(err.contains("not even as \"$1\""), "{err}");
        let err = script_of(&words("sh -c 'su mail -c \"x $sender\"'")).unwrap_err();
        assert!(err.contains("sh -c '… \"$1\" …' sh $sender"), "{err}");
    }

    #[test]
    fn data_beside_code_is_accepted() {
        for line in [
            // Option arguments and operands that are not code.
            "awk -v sender=$sender 'BEGIN { print sender }'",
            "sed -f /etc/mail/rewrite.sed -- $local",
            "awk -f /etc/mail/filter.awk $sender",
            "sed -e 's/^/> /' $local",
            "python3 -W ignore /usr/local/bin/deliver $sender",
            "ruby -I /usr/local/lib deliver.rb $sender",
            "env -u HOME /usr/bin/procmail -f $sender",
            // env's options end at its command: `-S` there is the command's own.
            "env LANG=C /usr/local/bin/deliver -S $sender",
            "env -- /usr/local/bin/deliver -S $sender",
            "flock -w 5 /run/x.lock /usr/bin/procmail -f $sender",
            // flock takes only `-c` and `--command` as words of their own.
            "flock /run/x.lock /usr/local/bin/deliver -rc $local",
            "perl -e 'print $ARGV[0]' $sender",
        ] {
            assert_eq!(script_of(&words(line)), Ok(None), "{line}");
        }
        // The inner program's positional parameters.
        let line = "sh -c 'sed \"s/x/$1/\" | procmail' sh $sender";
        assert_eq!(script(line).map(|s| s.0), Some(2));
    }
}
