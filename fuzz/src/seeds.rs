//! Seed inputs: one per template and per header view, and a few whole conversations (SYN,
//! data, replies, FIN, ICMP errors, fragments) so the fuzzer starts deep in the pipeline.

use crate::fixture::{self, TEMPLATES};

/// A pipeline record: template `t` for client port index `port`, no mutation, checksums kept.
fn template_op(t: u8, port: u16, extra: u8, worker: u8) -> Vec<u8> {
    let [hi, lo] = port.to_be_bytes();
    vec![1 | (worker << 2), t, hi, lo, extra, 0, 0]
}

/// Seeds per target name.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "pipeline" => {
            let mut out: Vec<Vec<u8>> = (0..TEMPLATES).map(|t| template_op(t, 7, 4, 0)).collect();
            // A NAT connection: SYN, SYN-ACK, data both ways, ICMP error, FIN, time, reuse.
            let conversation = [
                (0, 1, 0),
                (4, 1, 1),
                (1, 1, 10),
                (4, 1, 20),
                (12, 1, 0),
                (2, 1, 0),
                (3, 1, 0),
                (0, 1, 0),
            ];
            let mut c: Vec<u8> = conversation
                .iter()
                .flat_map(|&(t, p, e)| template_op(t, p, e, 0))
                .collect();
            c.extend_from_slice(&[3 | 0x80, 0, 200]);
            c.extend(template_op(1, 1, 0, 1));
            out.push(c);
            // Fragments in and out of order, UDP flows filling the table, then time.
            let mut f: Vec<u8> = [20u8, 21, 23, 22, 21]
                .iter()
                .flat_map(|&t| template_op(t, 3, 0, 0))
                .collect();
            for p in 0..40 {
                f.extend(template_op(5, p, 0, (p % 2) as u8));
            }
            f.extend_from_slice(&[3 | 0x80, 1, 0]);
            f.extend(template_op(5, 1, 0, 0));
            out.push(f);
            // Neighbour Discovery for IPv4 addresses spelled IPv4-mapped (a solicitation for
            // the VIP was answered; an advertisement would move RS1): raw records, so the
            // fuzzer mutates from them.
            let raw = |f: Vec<u8>| {
                let mut r = vec![0, (f.len() / 2) as u8];
                r.extend_from_slice(&f);
                r
            };
            out.push(raw(fixture::neighbour_solicitation(
                fixture::VIP.to_ipv6_mapped(),
            )));
            out.push(raw(fixture::neighbour_advertisement(
                fixture::RS1_IP.to_ipv6_mapped(),
                [0x02, 0, 0, 0, 0, 0x77],
            )));
            // Raw junk.
            out.push(vec![
                0, 30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 0,
            ]);
            out
        }
        "wire" => (0..10u8)
            .map(|k| {
                let mut v = vec![k];
                v.extend(
                    crate::fixture::template(k, 1000, 8)
                        .get(14..)
                        .unwrap_or(&[]),
                );
                v
            })
            .collect(),
        "rewrites" => (0..5u8)
            .flat_map(|k| {
                [0u8, 1, 9, 12, 13, 20].map(|t| {
                    let mut v = vec![k, 21, 0x1f, 0x90];
                    v.extend(
                        crate::fixture::template(t, 1000, 8)
                            .get(14..)
                            .unwrap_or(&[]),
                    );
                    v
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}
