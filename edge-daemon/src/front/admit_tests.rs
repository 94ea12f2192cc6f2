//! Unit tests of the gate's connection registry (`admit.rs`): who is closed to make room.

use super::*;

fn ip(a: u8, b: u8) -> IpAddr {
    IpAddr::from([10, 0, a, b])
}

fn admission(total: usize, pending: usize, per_client: usize) -> Arc<Admission> {
    let caps = Caps {
        total,
        pending,
        pending_per_client: per_client,
        fd_ceiling: None,
    };
    Admission::new(caps, &Registry::new()).unwrap()
}

#[test]
fn a_client_over_its_pending_cap_loses_its_own_oldest() {
    let a = admission(100, 50, 3);
    let other = a.admit(ip(9, 9)).unwrap();
    let slots: Vec<Slot> = (0..3).map(|_| a.admit(ip(1, 1)).unwrap()).collect();
    let fourth = a.admit(ip(1, 1)).unwrap();
    assert!(
        slots[0].evict.is_cancelled(),
        "the client's oldest is closed"
    );
    assert!(!slots[1].evict.is_cancelled() && !fourth.evict.is_cancelled());
    assert!(!other.evict.is_cancelled(), "another client is untouched");
    assert_eq!(a.counts(), (4, 4));
    drop(slots);
    assert_eq!(a.counts(), (2, 2), "an evicted slot is not released twice");
}

#[test]
fn a_full_pending_cap_closes_the_oldest_of_the_busiest_client() {
    let a = admission(100, 4, 4);
    let device = a.admit(ip(2, 1)).unwrap();
    let attacker: Vec<Slot> = (0..3).map(|_| a.admit(ip(1, 1)).unwrap()).collect();
    // Full: the newcomer gets a place; the busiest client's oldest goes, not the device
    // that came first.
    let newcomer = a.admit(ip(3, 1)).unwrap();
    assert!(attacker[0].evict.is_cancelled());
    assert!(!device.evict.is_cancelled() && !newcomer.evict.is_cancelled());
    // With one each, the oldest overall goes.
    let a = admission(100, 2, 2);
    let first = a.admit(ip(1, 1)).unwrap();
    let second = a.admit(ip(1, 2)).unwrap();
    let _third = a.admit(ip(1, 3)).unwrap();
    assert!(first.evict.is_cancelled() && !second.evict.is_cancelled());
}

#[test]
fn connected_devices_are_never_closed_and_a_full_gate_refuses() {
    let a = admission(2, 2, 2);
    let d1 = a.admit(ip(1, 1)).unwrap();
    d1.connected();
    let pending = a.admit(ip(1, 2)).unwrap();
    // Total cap reached: a pending connection makes room.
    let d2 = a.admit(ip(1, 3)).unwrap();
    assert!(pending.evict.is_cancelled());
    d2.connected();
    // Only connected devices left: the newcomer is refused, nobody is closed.
    assert!(a.admit(ip(1, 4)).is_none());
    assert!(!d1.evict.is_cancelled() && !d2.evict.is_cancelled());
    drop(d1);
    assert!(
        a.admit(ip(1, 4)).is_some(),
        "a closed device frees its place"
    );
}

#[test]
fn ipv6_clients_are_grouped_by_their_64() {
    let a = admission(100, 50, 2);
    let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
    let first = a.admit(v6(1)).unwrap();
    let _second = a.admit(v6(2)).unwrap();
    let _third = a.admit(v6(3)).unwrap();
    assert!(first.evict.is_cancelled(), "one /64 is one client");
}

#[test]
fn near_the_descriptor_limit_only_pending_connections_make_room() {
    let caps = Caps {
        total: 100,
        pending: 50,
        pending_per_client: 50,
        fd_ceiling: Some(1000),
    };
    let a = Admission::new(caps, &Registry::new()).unwrap();
    let device = a.admit(ip(1, 1)).unwrap();
    device.connected();
    let pending = a.admit(ip(1, 2)).unwrap();
    // The process (the HTTP server included) now holds nearly every descriptor.
    {
        let mut m = a.inner.lock();
        m.fds_open = 999;
        m.fds_counted = Some(Instant::now());
    }
    let newcomer = a.admit(ip(1, 3)).unwrap();
    assert!(
        pending.evict.is_cancelled(),
        "a pending connection made room"
    );
    newcomer.connected();
    assert!(a.admit(ip(1, 4)).is_none(), "then newcomers are refused");
    assert!(!device.evict.is_cancelled() && !newcomer.evict.is_cancelled());
}

#[test]
fn clients_that_misbehaved_lose_their_pending_connections_first() {
    // Many attacking addresses with one slow socket each: a device that just connected
    // from a clean address outlives the attackers' older sockets.
    let a = admission(100, 3, 3);
    let device = a.admit(ip(2, 1)).unwrap();
    let attackers: Vec<Slot> = (1..=2).map(|n| a.admit(ip(1, n)).unwrap()).collect();
    a.strike(ip(1, 1));
    a.strike(ip(1, 2));
    let newcomer = a.admit(ip(3, 1)).unwrap();
    assert!(
        attackers[0].evict.is_cancelled(),
        "the oldest suspect's goes"
    );
    assert!(!device.evict.is_cancelled(), "not the older clean one");
    let _next = a.admit(ip(3, 2)).unwrap();
    assert!(attackers[1].evict.is_cancelled());
    // No suspect left pending: the oldest overall, as before.
    let _last = a.admit(ip(3, 3)).unwrap();
    assert!(device.evict.is_cancelled() && !newcomer.evict.is_cancelled());
}

/// Makes every pending connection look `by` older.
fn age(a: &Admission, by: Duration) {
    for p in a.inner.lock().pending.values_mut() {
        p.since = p.since.checked_sub(by).unwrap();
    }
}

#[test]
fn a_fresh_connection_closed_to_make_room_is_not_a_suspect() {
    // The flood's victim: a device whose new connection was closed before its CONNECT
    // could be read must not go first on its retry.
    let a = admission(100, 2, 2);
    let device = a.admit(ip(1, 1)).unwrap();
    let _second = a.admit(ip(1, 2)).unwrap();
    let _third = a.admit(ip(1, 3)).unwrap();
    assert!(device.evict.is_cancelled());
    assert!(!a.inner.lock().suspect(&ip(1, 1), Instant::now()));
}

#[test]
fn a_client_closed_to_make_room_is_suspect_next_time() {
    let a = admission(100, 2, 2);
    let first = a.admit(ip(1, 1)).unwrap();
    // Pending for longer than a device takes to send its CONNECT.
    age(&a, SLOW_PENDING * 2);
    let second = a.admit(ip(1, 2)).unwrap();
    let third = a.admit(ip(1, 3)).unwrap();
    assert!(first.evict.is_cancelled() && !second.evict.is_cancelled());
    let again = a.admit(ip(1, 1)).unwrap();
    assert!(second.evict.is_cancelled(), "the pending set was clean");
    // Fresh connections of clean clients are no suspects when closed.
    assert!(!a.inner.lock().suspect(&ip(1, 2), Instant::now()));
    // The evicted client came back: its connection goes before the older clean one.
    let _fourth = a.admit(ip(1, 4)).unwrap();
    assert!(again.evict.is_cancelled() && !third.evict.is_cancelled());
}

#[test]
fn a_busier_client_loses_before_a_marked_one_and_authenticating_clears_the_mark() {
    let a = admission(100, 4, 4);
    let marked = a.admit(ip(2, 1)).unwrap();
    a.strike(ip(2, 1));
    let busy: Vec<Slot> = (0..3).map(|_| a.admit(ip(1, 1)).unwrap()).collect();
    let _newcomer = a.admit(ip(3, 1)).unwrap();
    assert!(busy[0].evict.is_cancelled(), "most pending loses first");
    assert!(!marked.evict.is_cancelled(), "a mark only breaks ties");
    // A device authenticated from a marked address: among equals it is no longer first.
    let a = admission(100, 2, 2);
    let older = a.admit(ip(6, 1)).unwrap();
    let was_marked = a.admit(ip(7, 1)).unwrap();
    a.strike(ip(7, 1));
    a.forgive(ip(7, 1));
    let _newcomer = a.admit(ip(8, 1)).unwrap();
    assert!(older.evict.is_cancelled() && !was_marked.evict.is_cancelled());
}

#[test]
fn strikes_are_bounded_and_expire() {
    let a = admission(100, 10, 10);
    let t0 = Instant::now();
    let mut m = a.inner.lock();
    let at = |n: u32| t0 + Duration::from_micros(u64::from(n));
    for n in 0..MAX_STRIKES as u32 {
        m.strike(IpAddr::from(n.to_be_bytes()), at(n));
    }
    let late = IpAddr::from([250, 0, 0, 1]);
    let t1 = at(MAX_STRIKES as u32);
    m.strike(late, t1);
    assert!(m.strikes.len() <= MAX_STRIKES, "memory bounded");
    assert!(
        m.strikes.len() > MAX_STRIKES * 3 / 4,
        "only the oldest eighth made room"
    );
    assert!(m.suspect(&late, t1), "the newest is recorded");
    assert!(
        !m.suspect(&IpAddr::from([0, 0, 0, 0]), t1),
        "the oldest made room"
    );
    let recent = IpAddr::from(4000u32.to_be_bytes());
    assert!(m.suspect(&recent, t1));
    // The next new address costs no scan: there is room again.
    let before = m.strikes.len();
    m.strike(IpAddr::from([250, 0, 0, 3]), t1);
    assert_eq!(m.strikes.len(), before + 1);
    let later = t1 + STRIKE_FOR;
    assert!(!m.suspect(&recent, later), "expired");
    // Full again, every strike from before `later`: all of them expired make room.
    let mut n = 5000u32;
    while m.strikes.len() < MAX_STRIKES {
        m.strike(IpAddr::from(n.to_be_bytes()), t1);
        n += 1;
    }
    let new = IpAddr::from([250, 0, 0, 2]);
    m.strike(new, later);
    assert_eq!(m.strikes.len(), 1, "expired strikes make room");
    assert!(m.suspect(&new, later));
}
