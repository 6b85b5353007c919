use super::*;
use crate::config::WindowConfig;

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

fn weekdays(from: &str, until: &str, zone: &str) -> Window {
    Window::compile(&WindowConfig {
        days: ids(&["mon", "tue", "wed", "thu", "fri"]),
        from: from.into(),
        until: until.into(),
        time_zone: zone.into(),
        lead_time_zone_field: None,
    })
    .unwrap()
}

#[test]
fn delays_read_like_people_write_them() {
    assert_eq!(parse_delay("0"), Ok(0));
    assert_eq!(parse_delay("90m"), Ok(90 * 60_000));
    assert_eq!(parse_delay("3d"), Ok(3 * 86_400_000));
    assert_eq!(parse_delay("1d12h"), Ok(36 * 3_600_000));
    for bad in [
        "",
        "3",
        "d",
        "3w",
        "-1d",
        "1.5d",
        "400d",
        "99999999999999999999d",
    ] {
        assert!(parse_delay(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_window_holds_what_falls_outside_until_it_opens() {
    let w = weekdays("09:00", "17:00", "Europe/Berlin");
    // Inside: unchanged (Monday 2026-12-07, 10:00 in Berlin = 09:00 UTC).
    assert_eq!(
        w.next_open(ms("2026-12-07T09:00:00Z"), None),
        ms("2026-12-07T09:00:00Z")
    );
    // Before the opening: today at 09:00 Berlin.
    assert_eq!(
        w.next_open(ms("2026-12-07T05:00:00Z"), None),
        ms("2026-12-07T08:00:00Z")
    );
    // After closing on Friday: Monday at 09:00.
    assert_eq!(
        w.next_open(ms("2026-12-11T17:30:00Z"), None),
        ms("2026-12-14T08:00:00Z")
    );
    // Saturday: Monday.
    assert_eq!(
        w.next_open(ms("2026-12-12T12:00:00Z"), None),
        ms("2026-12-14T08:00:00Z")
    );
    // The lead's own zone wins when given.
    let tokyo = lead_zone(Some("Asia/Tokyo"));
    assert!(tokyo.is_some());
    assert_eq!(
        w.next_open(ms("2026-12-07T09:00:00Z"), tokyo),
        ms("2026-12-08T00:00:00Z")
    );
    assert_eq!(lead_zone(Some("Mars/Olympus")), None);
    // Across a DST change (Berlin, 29 March 2026): Monday 30 March opens at 07:00 UTC.
    assert_eq!(
        w.next_open(ms("2026-03-28T12:00:00Z"), None),
        ms("2026-03-30T07:00:00Z")
    );
}

#[test]
fn the_next_step_never_repeats_one_and_skips_none_still_ahead() {
    let order = ids(&["a", "b", "c"]);
    assert_eq!(still_to_come(&order, &[]), ids(&["a", "b", "c"]));
    assert_eq!(still_to_come(&order, &ids(&["a"])), ids(&["b", "c"]));
    assert_eq!(
        still_to_come(&order, &ids(&["a", "b", "c"])),
        Vec::<String>::new()
    );
    // A step inserted before where the lead is does not reach them; one after does.
    let edited = ids(&["a", "x", "b", "y", "c"]);
    assert_eq!(still_to_come(&edited, &ids(&["a", "b"])), ids(&["y", "c"]));
    // A removed step they already had: the position comes from the furthest known one.
    assert_eq!(
        still_to_come(&ids(&["a", "c"]), &ids(&["a", "b"])),
        ids(&["c"])
    );
}

#[test]
fn an_edit_is_planned_per_enrolment() {
    let old = ids(&["a", "b", "c"]);
    // Appended: everyone not past it gains it, also those who finished.
    let new = ids(&["a", "b", "c", "d"]);
    assert_eq!(
        change(&old, &new, &ids(&["a"]), Some("a")).gains,
        ids(&["d"])
    );
    assert_eq!(
        change(&old, &new, &ids(&["a", "b", "c"]), None).gains,
        ids(&["d"])
    );
    // Removed: those still before it lose it; the one waiting for it loses it too.
    let new = ids(&["a", "c"]);
    assert_eq!(
        change(&old, &new, &ids(&["a"]), Some("a")).loses,
        ids(&["b"])
    );
    assert_eq!(
        change(&old, &new, &ids(&["a", "b"]), Some("b")).loses,
        ids(&["b"])
    );
    assert_eq!(
        change(&old, &new, &ids(&["a", "b"]), Some("b")).gains,
        Vec::<String>::new()
    );
}

#[test]
fn links_are_found_in_order_once() {
    let text =
        "Read https://example.com/a, then (https://example.com/b). Again: https://example.com/a\n\
                <a href=\"https://example.com/c?x=1&y=2\">c</a> {{ unsubscribe_url }} http://";
    assert_eq!(
        links_in(text),
        ids(&[
            "https://example.com/a",
            "https://example.com/b",
            "https://example.com/c?x=1&y=2"
        ])
    );
}

#[test]
fn tokens_verify_only_as_made() {
    let t = Tokens::new([7; 32]);
    let id = uuid::Uuid::now_v7().to_string();
    let reply = t.reply_token(&id).unwrap();
    assert_eq!(reply.len(), 48);
    assert_eq!(t.verify_reply(&reply), Some(id.clone()));
    assert_eq!(t.verify_reply(&reply.to_uppercase()), Some(id.clone()));
    let mut forged = reply.clone().into_bytes();
    forged[40] = if forged[40] == b'0' { b'1' } else { b'0' };
    assert_eq!(t.verify_reply(std::str::from_utf8(&forged).unwrap()), None);
    assert_eq!(Tokens::new([8; 32]).verify_reply(&reply), None);
    let address = reply_address("replies@in.example.com", &reply).unwrap();
    assert_eq!(token_of_address(&address), Some(reply.as_str()));

    let click = t.click_token(&id, 2).unwrap();
    assert_eq!(t.read_click(&click), Some((id.clone(), 2, true)));
    let other = click.replace("-2-", "-3-");
    assert_eq!(t.read_click(&other), Some((id, 3, false)));
    assert_eq!(t.read_click("nonsense"), None);
}
