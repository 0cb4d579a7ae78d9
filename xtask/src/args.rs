//! The one argument reader of `cargo run`, `cargo run -- bench` and `cargo run -- soak` (std only: see
//! docs/architecture.md, "The runner (xtask)", for why not a crate), and the one CPU-list parser.

use std::collections::VecDeque;
use std::str::FromStr;

/// The words of a command line, read one option at a time.
#[derive(Clone, Debug, Default)]
pub struct Args {
    words: VecDeque<String>,
}

/// One option word: `--name`, or `--name=value` split at its first `=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    pub name: String,
    inline: Option<String>,
}

impl Opt {
    /// A flag: `--name=value` is an error.
    pub fn flag(&self) -> Result<(), String> {
        match self.inline {
            Some(_) => Err(format!("{} takes no value", self.name)),
            None => Ok(()),
        }
    }
}

impl Args {
    pub fn new<I, S>(words: I) -> Args
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Args {
            words: words.into_iter().map(Into::into).collect(),
        }
    }

    /// The next word, not consumed.
    pub fn peek(&self) -> Option<&str> {
        self.words.front().map(String::as_str)
    }

    /// The next word as an option. Only words that start with `--` are split at `=`; `--` itself comes back
    /// as an option named `--` (the caller decides whether the rest are emulator arguments).
    pub fn next_opt(&mut self) -> Option<Opt> {
        let word = self.words.pop_front()?;
        Some(match word.split_once('=') {
            Some((n, v)) if n.starts_with("--") => Opt {
                name: n.to_string(),
                inline: Some(v.to_string()),
            },
            _ => Opt {
                name: word,
                inline: None,
            },
        })
    }

    /// The value of `opt`: the part after `=`, or the next word.
    pub fn value(&mut self, opt: &Opt) -> Result<String, String> {
        match &opt.inline {
            Some(v) => Ok(v.clone()),
            None => self
                .words
                .pop_front()
                .ok_or_else(|| format!("{} needs a value", opt.name)),
        }
    }

    /// A value of `opt` that parses as `T` and passes `ok`; otherwise `<name> "<value>": <expected>`.
    pub fn number<T: FromStr>(
        &mut self,
        opt: &Opt,
        ok: impl Fn(&T) -> bool,
        expected: &str,
    ) -> Result<T, String> {
        let v = self.value(opt)?;
        v.parse()
            .ok()
            .filter(|n| ok(n))
            .ok_or_else(|| format!("{} {v:?}: {expected}", opt.name))
    }

    /// Every word left.
    pub fn rest(&mut self) -> Vec<String> {
        self.words.drain(..).collect()
    }
}

/// A CPU list: `1,2,4` (whitespace allowed), in the order given, each a count from 1 to `max`.
pub fn cpu_list(option: &str, s: &str, max: u32) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    if max == u32::MAX {
                        format!("{option} {s:?}: {item:?} is not a CPU count > 0")
                    } else {
                        format!("{option} {s:?}: {item:?} is not a CPU count from 1 to {max}")
                    }
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_values_and_flags() {
        let mut a = Args::new([
            "--smp=4", "--append", "a b", "--quiet", "--x=", "stray", "--",
        ]);
        let o = a.next_opt().unwrap();
        assert_eq!(o.name, "--smp");
        assert_eq!(a.value(&o).unwrap(), "4");
        assert!(o.flag().is_err());
        let o = a.next_opt().unwrap();
        assert_eq!(a.value(&o).unwrap(), "a b");
        let o = a.next_opt().unwrap();
        assert_eq!((o.name.as_str(), o.flag()), ("--quiet", Ok(())));
        let o = a.next_opt().unwrap();
        assert_eq!(a.value(&o).unwrap(), "");
        assert_eq!(a.next_opt().unwrap().name, "stray");
        assert_eq!(a.peek(), Some("--"));
        assert_eq!(a.next_opt().unwrap().name, "--");
        assert_eq!(a.next_opt(), None);

        let mut a = Args::new(["--runs"]);
        let o = a.next_opt().unwrap();
        assert_eq!(a.value(&o).unwrap_err(), "--runs needs a value");
        let mut a = Args::new(["--runs", "0", "-x", "y"]);
        let o = a.next_opt().unwrap();
        assert_eq!(
            a.number::<u32>(&o, |&n| n > 0, "expected a number > 0")
                .unwrap_err(),
            "--runs \"0\": expected a number > 0"
        );
        // A single dash is not split at '=' and the rest is everything left.
        assert_eq!(a.rest(), ["-x", "y"]);
        let o = Args::new(["-a=b"]).next_opt().unwrap();
        assert_eq!(o.name, "-a=b");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("--cpus", "4, 1,2,2", 255), Ok(vec![4, 1, 2, 2]));
        assert_eq!(cpu_list("--cpus", "1024", u32::MAX), Ok(vec![1024]));
        for bad in ["", "0", "1,,2", "x", "16", "1,-2"] {
            let e = cpu_list("--bochs-cpus", bad, 15).unwrap_err();
            assert!(e.starts_with(&format!("--bochs-cpus {bad:?}: ")), "{e}");
            assert!(e.ends_with("is not a CPU count from 1 to 15"), "{e}");
        }
        assert!(cpu_list("--cpus", "0", u32::MAX)
            .unwrap_err()
            .ends_with("\"0\" is not a CPU count > 0"));
    }
}
