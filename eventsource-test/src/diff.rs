//! Failure messages that say what differs instead of dumping both sides.

use std::fmt::{Debug, Write as _};

use similar::{Algorithm, ChangeTag, DiffOp, TextDiff};

/// The multi-line `Debug` form of a value.
pub(crate) fn pretty<T: Debug + ?Sized>(value: &T) -> String {
    format!("{value:#?}")
}

/// The one-line `Debug` form of a value.
pub(crate) fn compact<T: Debug + ?Sized>(value: &T) -> String {
    format!("{value:?}")
}

/// Indents every line of `text` by `by` spaces.
pub(crate) fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| format!("{pad}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line diff of two texts, `-` for `expected`, `+` for `actual`, two-space context.
pub(crate) fn line_diff(expected: &str, actual: &str) -> String {
    let diff = TextDiff::from_lines(expected, actual);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        let line = change.value().trim_end_matches('\n');
        let _ = writeln!(out, "{sign} {line}");
    }
    out.trim_end().to_owned()
}

/// Describes how `actual` differs from `expected`, or `None` when they are equal.
///
/// The sequences are aligned (an extra or missing event does not make every later one
/// differ), and each difference names the index in `actual` or `expected`, the event's
/// label (its stored name), and the values.
pub(crate) fn sequence_mismatch<T: Debug + PartialEq>(
    what: &str,
    expected: &[T],
    actual: &[T],
    label: impl Fn(&T) -> String,
) -> Option<String> {
    if expected == actual {
        return None;
    }
    let names = |items: &[T]| items.iter().map(&label).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "{what} differ from the expected ones\n  expected: {} [{}]\n  actual:   {} [{}]\n",
        count(expected.len()),
        names(expected),
        count(actual.len()),
        names(actual),
    );
    // Align by equality classes: events are only `PartialEq`, and sequences are short.
    let mut classes: Vec<&T> = Vec::new();
    let ops = similar::capture_diff_slices(
        Algorithm::Myers,
        &classify(&mut classes, expected),
        &classify(&mut classes, actual),
    );
    for op in ops {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete {
                old_index, old_len, ..
            } => {
                missing(
                    &mut out,
                    old_index,
                    &expected[old_index..old_index + old_len],
                    &label,
                );
            }
            DiffOp::Insert {
                new_index, new_len, ..
            } => {
                unexpected(
                    &mut out,
                    new_index,
                    &actual[new_index..new_index + new_len],
                    &label,
                );
            }
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                let paired = old_len.min(new_len);
                for k in 0..paired {
                    let (i, j) = (old_index + k, new_index + k);
                    let (e, a) = (&expected[i], &actual[j]);
                    let at = if i == j {
                        format!("[{j}]")
                    } else {
                        format!("[{j}] (expected [{i}])")
                    };
                    if label(e) == label(a) {
                        let _ = writeln!(out, "\n  event {at} {} differs:", label(a));
                    } else {
                        let _ = writeln!(
                            out,
                            "\n  event {at} is {}, expected {}:",
                            label(a),
                            label(e)
                        );
                    }
                    let _ = writeln!(out, "    expected: {}", compact(e));
                    let _ = writeln!(out, "    actual:   {}", compact(a));
                    let (pe, pa) = (pretty(e), pretty(a));
                    if pe.lines().count() > 1 {
                        let _ = writeln!(out, "    diff (- expected, + actual):");
                        let _ = writeln!(out, "{}", indent(&line_diff(&pe, &pa), 6));
                    }
                }
                let (from, to) = (old_index + paired, old_index + old_len);
                missing(&mut out, from, &expected[from..to], &label);
                let (from, to) = (new_index + paired, new_index + new_len);
                unexpected(&mut out, from, &actual[from..to], &label);
            }
        }
    }
    Some(out.trim_end().to_owned())
}

/// Replaces each item by the index of the first equal item seen (in `classes`).
fn classify<'a, T: PartialEq>(classes: &mut Vec<&'a T>, items: &'a [T]) -> Vec<usize> {
    items
        .iter()
        .map(
            |item| match classes.iter().position(|known| *known == item) {
                Some(class) => class,
                None => {
                    classes.push(item);
                    classes.len() - 1
                }
            },
        )
        .collect()
}

/// Reports `events`, expected from index `first` on, as missing.
fn missing<T: Debug>(out: &mut String, first: usize, events: &[T], label: &impl Fn(&T) -> String) {
    for (i, event) in (first..).zip(events) {
        let _ = writeln!(
            out,
            "\n  missing: expected [{i}] {} was not emitted:\n    {}",
            label(event),
            compact(event)
        );
    }
}

/// Reports `events`, emitted from index `first` on, as unexpected.
fn unexpected<T: Debug>(
    out: &mut String,
    first: usize,
    events: &[T],
    label: &impl Fn(&T) -> String,
) {
    for (j, event) in (first..).zip(events) {
        let _ = writeln!(
            out,
            "\n  unexpected: [{j}] {} was emitted but not expected:\n    {}",
            label(event),
            compact(event)
        );
    }
}

/// "1 event", "3 events".
pub(crate) fn count(n: usize) -> String {
    if n == 1 {
        "1 event".to_owned()
    } else {
        format!("{n} events")
    }
}

/// A numbered list of values, one per line, for messages about a whole sequence.
pub(crate) fn numbered<T: Debug>(items: &[T], label: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return "  (none)".to_owned();
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| format!("  [{i}] {}: {}", label(item), compact(item)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Ev {
        name: &'static str,
        n: u32,
    }

    fn ev(name: &'static str, n: u32) -> Ev {
        Ev { name, n }
    }

    fn label(e: &Ev) -> String {
        e.name.to_owned()
    }

    #[test]
    fn equal_sequences_have_no_mismatch() {
        assert_eq!(
            sequence_mismatch("events", &[ev("a", 1)], &[ev("a", 1)], label),
            None
        );
    }

    #[test]
    fn a_changed_field_names_the_index_and_shows_a_diff() {
        let message = sequence_mismatch(
            "events",
            &[ev("a", 1), ev("b", 2)],
            &[ev("a", 1), ev("b", 3)],
            label,
        )
        .unwrap();
        assert!(message.contains("event [1] b differs"), "{message}");
        assert!(message.contains("-     n: 2,"), "{message}");
        assert!(message.contains("+     n: 3,"), "{message}");
        assert!(
            !message.contains("[0]"),
            "equal events are not listed: {message}"
        );
    }

    #[test]
    fn an_extra_event_does_not_shift_the_rest() {
        let message = sequence_mismatch(
            "events",
            &[ev("a", 1), ev("c", 3)],
            &[ev("a", 1), ev("b", 2), ev("c", 3)],
            label,
        )
        .unwrap();
        assert!(message.contains("unexpected: [1] b"), "{message}");
        assert!(!message.contains("differs"), "{message}");
    }

    #[test]
    fn a_missing_event_is_named() {
        let message =
            sequence_mismatch("events", &[ev("a", 1), ev("b", 2)], &[ev("a", 1)], label).unwrap();
        assert!(message.contains("missing: expected [1] b"), "{message}");
    }
}
