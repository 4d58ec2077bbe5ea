// SPDX-License-Identifier: Apache-2.0
/*
 * ipip_decap: IP-in-IP decapsulation for a vipd TUN-mode real server, without an ipip/sit/ip6tnl
 * device. A tc (clsact) ingress program for the server's interface:
 *
 *   outer IPv4, protocol 4  (4in4)     outer IPv6, next header 41 (6in6)
 *   outer IPv4, protocol 41 (6in4)     outer IPv6, next header 4  (4in6)
 *
 * A packet is decapsulated only when the outer destination is one of this server's own
 * addresses (IPIP_LOCAL4 / IPIP_LOCAL6) AND the inner destination is one of the VIPs
 * (IPIP_VIP4 / IPIP_VIP6); the inner packet then continues up the stack as if it had arrived
 * on the interface itself (the VIP sits on lo). Everything else passes untouched (TC_ACT_OK).
 * Fragmented outer IPv4 packets are not touched (tc runs before reassembly; the load balancer
 * should answer "fragmentation needed" rather than fragment the outer packet). An outer IPv6 header may carry one destination-options
 * header (the RFC 2473 tunnel encapsulation limit that Linux ip6tnl adds); other extension
 * headers are not walked.
 *
 * Addresses are compile-time lists (no maps, so any tc loader works; one object per server):
 *   clang -O2 -g -target bpf -I/usr/include/$(gcc -print-multiarch) -c ipip_decap.bpf.c \
 *     -o ipip_decap.o \
 *     -D'IPIP_LOCAL4=V4(10,77,0,21)' -D'IPIP_LOCAL6=V6(0xfd00,0x77,0,0,0,0,0,0x21)' \
 *     -D'IPIP_VIP4=V4(10,77,100,1) V4(10,77,100,2)' -D'IPIP_VIP6=V6(0xfd00,0x77,0x100,0,0,0,0,1)'
 *   tc qdisc add dev eth0 clsact
 *   tc filter add dev eth0 ingress pref 49 handle 1 bpf direct-action obj ipip_decap.o sec tc
 * (V4 takes the four bytes of an address, V6 its eight 16-bit groups; list several by
 * juxtaposition; at least one local address and one VIP are required.)
 *
 * Family change (4in6, 6in4): bpf_skb_adjust_room() with BPF_F_ADJ_ROOM_DECAP_L3_IPV4/IPV6
 * (Linux >= 6.3) removes the outer header and switches skb->protocol in one call. On older
 * kernels that flag is rejected (-EINVAL, nothing changed) and the fallback does it in two
 * steps: bpf_skb_change_proto() (Linux >= 4.8; inserts 20 bytes for 4->6, removes 20 for 6->4)
 * followed by adjust_room for the rest. Build with -DIPIP_NO_DECAP_FLAGS to force the fallback.
 * Either way the Ethernet header's EtherType is rewritten to match (packet sockets see it).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#if !defined(IPIP_LOCAL4) && !defined(IPIP_LOCAL6)
#error "define IPIP_LOCAL4 and/or IPIP_LOCAL6 (this server's addresses), e.g. -D'IPIP_LOCAL4=V4(10,0,0,21)'"
#endif
#if !defined(IPIP_VIP4) && !defined(IPIP_VIP6)
#error "define IPIP_VIP4 and/or IPIP_VIP6 (the VIPs), e.g. -D'IPIP_VIP4=V4(10,0,100,1)'"
#endif
#ifndef IPIP_LOCAL4
#define IPIP_LOCAL4
#endif
#ifndef IPIP_LOCAL6
#define IPIP_LOCAL6
#endif
#ifndef IPIP_VIP4
#define IPIP_VIP4
#endif
#ifndef IPIP_VIP6
#define IPIP_VIP6
#endif

/* Added in Linux 6.3 (uapi enum, so no #ifdef possible): values from include/uapi/linux/bpf.h. */
#define IPIP_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define IPIP_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)

#ifndef IPPROTO_IPV6
#define IPPROTO_IPV6 41
#endif
#define IPIP_IP_MF 0x2000
#define IPIP_IP_OFFSET 0x1fff
#define IPIP_NEXTHDR_DEST 60

/* Address list matchers: `0 IPIP_VIP4` expands to `0 || (a) == ... || (a) == ...`. */
#define IPIP_BE32(a, b, c, d)                                                                 \
	bpf_htonl(((__u32)(a) << 24) | ((__u32)(b) << 16) | ((__u32)(c) << 8) | (__u32)(d))
#define IPIP_W6(g0, g1) bpf_htonl(((__u32)(g0) << 16) | (__u32)(g1))

static __always_inline int match4(__be32 a, int which_vip)
{
#define V4(p, q, r, s) || a == IPIP_BE32(p, q, r, s)
	if (which_vip)
		return 0 IPIP_VIP4;
	return 0 IPIP_LOCAL4;
#undef V4
}

static __always_inline int match6(const struct in6_addr *x, int which_vip)
{
	__u32 w0 = x->in6_u.u6_addr32[0], w1 = x->in6_u.u6_addr32[1];
	__u32 w2 = x->in6_u.u6_addr32[2], w3 = x->in6_u.u6_addr32[3];

	(void)w0, (void)w1, (void)w2, (void)w3; /* unused when a list is empty */
#define V6(g0, g1, g2, g3, g4, g5, g6, g7)                                                  \
	|| (w0 == IPIP_W6(g0, g1) && w1 == IPIP_W6(g2, g3) && w2 == IPIP_W6(g4, g5) &&         \
	    w3 == IPIP_W6(g6, g7))
	if (which_vip)
		return 0 IPIP_VIP6;
	return 0 IPIP_LOCAL6;
#undef V6
}

/* Is the packet at offset `off` an inner packet of family `inner_v6` addressed to a VIP? */
static __always_inline int inner_is_vip(struct __sk_buff *skb, __u32 off, int inner_v6)
{
	if (inner_v6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
			return 0;
		return match6(&ip6.daddr, 1);
	}
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0 || ip.version != 4 || ip.ihl < 5)
		return 0;
	return match4(ip.daddr, 1);
}

/* Remove the olen-byte outer header that follows the Ethernet header. */
static __always_inline int decap(struct __sk_buff *skb, __u32 olen, int outer_v6, int inner_v6)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO; /* the payload MSS does not change */
	__be16 proto = inner_v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);

	if (outer_v6 == inner_v6) {
		if (bpf_skb_adjust_room(skb, -(__s32)olen, BPF_ADJ_ROOM_MAC, flags) < 0)
			return TC_ACT_SHOT;
		return TC_ACT_OK;
	}
	int done = 0;
#ifndef IPIP_NO_DECAP_FLAGS
	done = bpf_skb_adjust_room(skb, -(__s32)olen, BPF_ADJ_ROOM_MAC,
				   flags | (inner_v6 ? IPIP_ADJ_ROOM_DECAP_L3_IPV6
						     : IPIP_ADJ_ROOM_DECAP_L3_IPV4)) == 0;
#endif
	if (!done) {
		/* Kernels before 6.3: change the protocol first (adds/removes 20 bytes right after
		 * the MAC header; the outer header is junk anyway), then remove what is left. */
		if (bpf_skb_change_proto(skb, proto, 0) < 0)
			return TC_ACT_SHOT;
		if (inner_v6) /* 6in4: the 20 inserted bytes + the outer IPv4 header */
			olen += sizeof(struct ipv6hdr) - sizeof(struct iphdr);
		else /* 4in6: 20 bytes of the outer IPv6 header (+ options) already gone */
			olen -= sizeof(struct ipv6hdr) - sizeof(struct iphdr);
		if (bpf_skb_adjust_room(skb, -(__s32)olen, BPF_ADJ_ROOM_MAC, flags) < 0)
			return TC_ACT_SHOT;
	}
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("tc")
int ipip_decap(struct __sk_buff *skb)
{
	const __u32 l3 = sizeof(struct ethhdr);

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		int inner_v6;
		__u32 olen;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)) < 0)
			return TC_ACT_OK;
		if (ip.version != 4 || ip.ihl < 5)
			return TC_ACT_OK;
		if (ip.protocol == IPPROTO_IPIP)
			inner_v6 = 0;
		else if (ip.protocol == IPPROTO_IPV6)
			inner_v6 = 1;
		else
			return TC_ACT_OK;
		if (ip.frag_off & bpf_htons(IPIP_IP_MF | IPIP_IP_OFFSET))
			return TC_ACT_OK;
		if (!match4(ip.daddr, 0))
			return TC_ACT_OK;
		olen = ip.ihl * 4;
		if (!inner_is_vip(skb, l3 + olen, inner_v6))
			return TC_ACT_OK;
		return decap(skb, olen, 0, inner_v6);
	}

	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u32 olen = sizeof(ip6);
		__u8 nh, opt[2];
		int inner_v6;

		if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
			return TC_ACT_OK;
		nh = ip6.nexthdr;
		if (nh == IPIP_NEXTHDR_DEST) { /* tunnel encapsulation limit (RFC 2473) */
			if (bpf_skb_load_bytes(skb, l3 + olen, opt, sizeof(opt)) < 0)
				return TC_ACT_OK;
			nh = opt[0];
			olen += ((__u32)opt[1] + 1) * 8;
		}
		if (nh == IPPROTO_IPV6)
			inner_v6 = 1;
		else if (nh == IPPROTO_IPIP)
			inner_v6 = 0;
		else
			return TC_ACT_OK;
		if (!match6(&ip6.daddr, 0))
			return TC_ACT_OK;
		if (!inner_is_vip(skb, l3 + olen, inner_v6))
			return TC_ACT_OK;
		return decap(skb, olen, 1, inner_v6);
	}

	return TC_ACT_OK;
}

/* No GPL-only helper is used, so the project licence is fine for the kernel too. */
char _license[] SEC("license") = "Apache-2.0";
