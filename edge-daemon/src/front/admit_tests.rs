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
