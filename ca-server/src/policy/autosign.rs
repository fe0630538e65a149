//! Puppet's `autosign.conf` allow-list (§4.1): `*` alone, `*.domain` globs, exact names; `#` comments;
//! lines with `#` or a space inside are invalid and reported.

/// A parsed allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<String>,
    /// (line number, text) of lines that were ignored as invalid.
    pub invalid: Vec<(usize, String)>,
}

impl AllowList {
    /// Parses the file text.
    pub fn parse(text: &str) -> AllowList {
        let mut list = AllowList::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.contains('#') || line.contains(' ') || line.contains('\t') {
                list.invalid.push((i + 1, line.to_string()));
                continue;
            }
            list.entries.push(line.to_string());
        }
        list
    }

    /// The entry that matches `certname`, if any.
    pub fn matching(&self, certname: &str) -> Option<&str> {
        self.entries
            .iter()
            .map(String::as_str)
            .find(|e| entry_matches(e, certname))
    }
}

fn entry_matches(entry: &str, certname: &str) -> bool {
    if entry == "*" {
        return true;
    }
    if let Some(domain) = entry.strip_prefix('*') {
        // Puppet's domain glob, as in auth.conf: `*.example.com` matches `a.example.com`,
        // `a.b.example.com` and `example.com` itself.
        let domain = crate::policy::access::munge_name(domain.trim_start_matches('.'));
        return !domain.is_empty() && crate::policy::access::in_domain(&domain, certname);
    }
    entry == certname
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puppet_rules() {
        let l = AllowList::parse("# comment\n\n*.example.com\nexact.other.test\nbad line\nalso#bad\n");
        assert_eq!(l.matching("a.example.com"), Some("*.example.com"));
        assert_eq!(l.matching("a.b.example.com"), Some("*.example.com"));
        assert_eq!(l.matching("example.com"), Some("*.example.com"));
        assert_eq!(l.matching("badexample.com"), None);
        assert_eq!(l.matching("exact.other.test"), Some("exact.other.test"));
        assert_eq!(
            l.matching("Exact.other.test"),
            None,
            "exact entries are case-sensitive"
        );
        assert_eq!(
            l.invalid,
            vec![(5, "bad line".to_string()), (6, "also#bad".to_string())]
        );
        assert_eq!(AllowList::parse("*\n").matching("anything"), Some("*"));
        assert_eq!(AllowList::parse("").matching("a"), None);
        assert_eq!(AllowList::parse("*.\n").matching("a"), None);
    }
}
