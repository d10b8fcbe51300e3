//! Flattening an error and its `source()` chain into one line.

/// An error and its sources, one line: `top: cause: root cause`. A source whose text
/// the line already holds (wrappers often repeat their cause) is left out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn joins_sources_and_skips_repeats() {
        let e = Layer(
            "request failed",
            Some(Box::new(Layer(
                "connect: connection refused",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(error_chain(&e), "request failed: connect: connection refused");
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
