// SPDX-License-Identifier: Apache-2.0
/*
 * vlan_switch: an 802.1Q switch for vipd's end-to-end bed, for kernels without the 8021q module
 * and without VLAN filtering in the bridge (like the test host's). Two tc (clsact) ingress
 * programs over one compile-time list of (VLAN id, access interface index) pairs:
 *
 *   sec "trunk"  on the trunk (the link to vipd's port): a frame tagged with a listed VLAN has
 *                its tag removed and goes out of that VLAN's access interface; anything else
 *                (untagged, other VLANs) passes on (TC_ACT_OK: the bridge it belongs to).
 *   sec "access" on each access interface: the frame is tagged with the interface's VLAN and
 *                goes out of the trunk (VS_TRUNK, an interface index).
 *   sec "prio"   on the trunk's egress: an untagged frame gets an 802.1p priority tag (VLAN
 *                id 0, priority 5), as a host with priority tagging sends it.
 *
 * The kernel holds a received tag in the skb (skb_vlan_untag runs before tc), so the programs
 * read and change it there (bpf_skb_vlan_pop / push) and the device puts it on the wire.
 *
 *   clang -O2 -g -target bpf -I/usr/include/$(gcc -print-multiarch) -c vlan_switch.bpf.c \
 *     -o vlan_switch.o -DVS_TRUNK=7 -D'VS_PAIRS=P(100, 12) P(200, 14)'
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#if !defined(VS_TRUNK) || !defined(VS_PAIRS)
#error "define VS_TRUNK (the trunk's ifindex) and VS_PAIRS, e.g. -D'VS_PAIRS=P(100, 12) P(200, 14)'"
#endif

/* The access interface of VLAN `vid` (0: not listed). */
static __always_inline __u32 access_of(__u32 vid)
{
#define P(v, ifindex) if (vid == (v)) return (ifindex);
	VS_PAIRS
#undef P
	return 0;
}

/* The VLAN of access interface `ifindex` (0: not listed). */
static __always_inline __u32 vlan_of(__u32 ifindex)
{
#define P(v, i) if (ifindex == (i)) return (v);
	VS_PAIRS
#undef P
	return 0;
}

SEC("trunk")
int vs_trunk(struct __sk_buff *skb)
{
	if (!skb->vlan_present)
		return TC_ACT_OK;
	__u32 out = access_of(skb->vlan_tci & 0x0fff);
	if (!out)
		return TC_ACT_OK;
	if (bpf_skb_vlan_pop(skb))
		return TC_ACT_SHOT;
	return bpf_redirect(out, 0);
}

SEC("access")
int vs_access(struct __sk_buff *skb)
{
	__u32 vid = vlan_of(skb->ifindex);
	if (!vid)
		return TC_ACT_OK;
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vid))
		return TC_ACT_SHOT;
	return bpf_redirect(VS_TRUNK, 0);
}

SEC("prio")
int vs_prio(struct __sk_buff *skb)
{
	if (!skb->vlan_present && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 5 << 13))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
