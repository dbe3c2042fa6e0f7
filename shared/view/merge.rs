//! Walking two sorted streams as one: how a snapshot reads its compact base and the changes laid
//! over it ([`super::snapshot`]) in one pass, in path order, without collecting either.
//!
//! Pure iterator adaptors over `(path, item)` streams, each sorted by path; nothing else of the
//! view is imported.

use std::cmp::Ordering;
use std::iter::Peekable;

/// The records of a base range (`below`) with the changes over the same range (`over`, where
/// `None` is a deletion): where both have a path, the change wins; deleted paths are left out.
pub(super) struct Layered<'a, E, A, B>
where
    A: Iterator<Item = (&'a str, Option<&'a E>)>,
    B: Iterator<Item = (&'a str, Option<&'a E>)>,
    E: 'a,
{
    below: Peekable<A>,
    over: Peekable<B>,
}

impl<'a, E, A, B> Layered<'a, E, A, B>
where
    A: Iterator<Item = (&'a str, Option<&'a E>)>,
    B: Iterator<Item = (&'a str, Option<&'a E>)>,
{
    pub(super) fn new(below: A, over: B) -> Self {
        Layered {
            below: below.peekable(),
            over: over.peekable(),
        }
    }
}

impl<'a, E, A, B> Iterator for Layered<'a, E, A, B>
where
    A: Iterator<Item = (&'a str, Option<&'a E>)>,
    B: Iterator<Item = (&'a str, Option<&'a E>)>,
{
    type Item = (&'a str, &'a E);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_over = match (self.below.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((a, _)), Some((b, _))) => match a.cmp(b) {
                    Ordering::Less => false,
                    Ordering::Greater => true,
                    Ordering::Equal => {
                        // Changed: the base's record is replaced (or deleted).
                        self.below.next();
                        true
                    }
                },
            };
            let (path, entry) = if take_over {
                self.over.next()?
            } else {
                self.below.next()?
            };
            if let Some(entry) = entry {
                return Some((path, entry));
            }
        }
    }
}

/// Two streams of distinct items, each sorted by path, as one sorted stream.
pub(super) struct Merged<T, A, B>
where
    A: Iterator<Item = T>,
    B: Iterator<Item = T>,
{
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<T, A, B> Merged<T, A, B>
where
    A: Iterator<Item = T>,
    B: Iterator<Item = T>,
{
    pub(super) fn new(a: A, b: B) -> Self {
        Merged {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

/// What orders a merged item: its path.
pub(super) trait ByPath {
    fn path(&self) -> &str;
}

impl ByPath for &str {
    fn path(&self) -> &str {
        self
    }
}

impl<E> ByPath for (&str, &E) {
    fn path(&self) -> &str {
        self.0
    }
}

impl<T: ByPath, A, B> Iterator for Merged<T, A, B>
where
    A: Iterator<Item = T>,
    B: Iterator<Item = T>,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.path() < x.path() => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_replace_and_delete_what_is_below() {
        let below = [("a", Some(&1)), ("b", Some(&2)), ("d", Some(&4))];
        let over = [("b", None), ("c", Some(&30)), ("d", Some(&40)), ("e", None)];
        let got: Vec<_> = Layered::new(below.into_iter(), over.into_iter()).collect();
        assert_eq!(got, [("a", &1), ("c", &30), ("d", &40)]);
    }

    #[test]
    fn merged_streams_stay_in_order() {
        let got: Vec<&str> =
            Merged::new(["a", "c", "e"].into_iter(), ["b", "f"].into_iter()).collect();
        assert_eq!(got, ["a", "b", "c", "e", "f"]);
        let got: Vec<&str> = Merged::new([].into_iter(), ["x"].into_iter()).collect();
        assert_eq!(got, ["x"]);
    }
}
