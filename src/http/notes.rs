//! Release notes are Markdown (CommonMark with tables, strikethrough and
//! task lists); where a client shows HTML — Sparkle's `<description>`,
//! electron-updater's `releaseNotes`, an Atom entry's content — they are
//! rendered here, safely: the HTML can only hold the tags the Markdown
//! renderer makes. Raw HTML in the notes is shown as text, not passed
//! through, and a link or image whose address is not `http(s)`, `mailto`
//! or relative (`javascript:`, `data:`, `vbscript:`, …) loses it. The
//! renderer escapes text and attribute values itself.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// Release notes as HTML safe to show to the customer.
pub fn to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        // Raw HTML, block or inline, becomes visible text.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: safe_url(dest_url), title, id })
        }
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// `url` when it is `http:`, `https:`, `mailto:` or has no scheme (a
/// relative address or a fragment); otherwise empty.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    // A scheme is letters, digits, `+`, `-`, `.` before the first `:`, and
    // browsers ignore control characters and spaces inside it.
    let cleaned: String = url.chars().filter(|c| !c.is_ascii_control() && !c.is_whitespace()).collect();
    let scheme = cleaned.split_once(':').map(|(s, _)| s).filter(|s| !s.contains(['/', '?', '#']));
    match scheme {
        None => url,
        Some(s) if ["http", "https", "mailto"].iter().any(|ok| s.eq_ignore_ascii_case(ok)) => url,
        Some(_) => CowStr::Borrowed(""),
    }
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn markdown_is_rendered() {
        assert_eq!(
            to_html("# Fixes\n\n- **faster** start\n"),
            "<h1>Fixes</h1>\n<ul>\n<li><strong>faster</strong> start</li>\n</ul>\n"
        );
        assert_eq!(
            to_html("[docs](https://example.com/a?b=1&c=2)"),
            "<p><a href=\"https://example.com/a?b=1&amp;c=2\">docs</a></p>\n"
        );
        assert_eq!(to_html("[rel](../notes#x)"), "<p><a href=\"../notes#x\">rel</a></p>\n");
    }

    /// What an attacker who can write release notes (or a compromised
    /// build pipeline) tries: none of it comes out as markup or a live
    /// address.
    const ALLOWED_TAGS: &[&str] = &[
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "strong",
        "em",
        "del",
        "code",
        "pre",
        "a",
        "img",
        "blockquote",
        "hr",
        "br",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "input",
    ];

    /// The tags of renderer output, with their attributes. Text never holds
    /// a raw `<` (the renderer escapes it), so every `<` opens a tag.
    fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        for piece in html.split('<').skip(1) {
            let inside = &piece[..piece.find('>').expect("a tag closes")];
            let inside = inside.trim_start_matches('/').trim_end_matches('/').trim();
            let (name, mut rest) = inside.split_once(' ').unwrap_or((inside, ""));
            let mut attributes = Vec::new();
            while let Some((attr, after)) = rest.trim().split_once('=') {
                let after = after.strip_prefix('"').expect("quoted attribute values");
                let (value, more) = after.split_once('"').expect("closed attribute value");
                attributes.push((attr.trim().to_owned(), value.to_owned()));
                rest = more;
            }
            for flag in rest.split_whitespace() {
                attributes.push((flag.to_owned(), String::new()));
            }
            out.push((name.to_owned(), attributes));
        }
        out
    }

    #[test]
    fn nothing_executable_survives() {
        let attacks = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "a <b onmouseover=alert(1)>b</b>",
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x](java\tscript:alert(1))",
            "[x](<java\u{1}script:alert(1)>)",
            "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
            "![x](vbscript:msgbox(1))",
            "[x][r]\n\n[r]: javascript:alert(1)",
            "<a href=\"javascript:alert(1)\">x</a>",
            "`<script>`",
            "<!-- <script>alert(1)</script> -->",
            "<iframe src=https://evil.example></iframe>",
        ];
        for attack in attacks {
            let html = to_html(attack);
            for (tag, attributes) in tags(&html) {
                assert!(ALLOWED_TAGS.contains(&tag.as_str()), "{attack:?} -> {html:?}: <{tag}>");
                for (name, value) in attributes {
                    assert!(
                        ["href", "src", "alt", "title", "type", "checked", "disabled", "style", "start"]
                            .contains(&name.as_str()),
                        "{attack:?} -> {html:?}: {name}"
                    );
                    let lower = value.to_ascii_lowercase();
                    if name == "href" || name == "src" {
                        assert!(
                            lower.is_empty()
                                || lower.starts_with("http")
                                || lower.starts_with("mailto:")
                                || !lower.contains(':'),
                            "{attack:?} -> {html:?}: {value}"
                        );
                    }
                    if name == "style" {
                        assert!(lower.starts_with("text-align:"), "{attack:?} -> {html:?}");
                    }
                }
            }
        }
        // Shown, not dropped: the reader sees what was written.
        assert_eq!(to_html("<b>x</b>"), "<p>&lt;b&gt;x&lt;/b&gt;</p>\n");
    }
}
