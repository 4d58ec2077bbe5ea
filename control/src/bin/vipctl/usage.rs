//! `vipctl --help`, laid out like ipvsadm's: the usage lines, the commands, the options.
//! (Written by hand: clap's generated help cannot group options the way ipvsadm users read
//! them; a test checks that every option clap knows is listed here.)

/// The help text.
pub const USAGE: &str = "\
vipctl: administration of a running vipd (ipvsadm's commands, through vipd's HTTP API)
Usage:
  vipctl -A|E -t|u service-address [-s scheduler] [-b sched-flags] [-p [timeout]] [-M netmask]
        [--mode mode] [service options] [check options]
  vipctl -D -t|u service-address
  vipctl -a|e -t|u service-address -r server-address [-g|i|m] [-w weight] [-x upper] [-y lower]
        [check options]
  vipctl -d -t|u service-address -r server-address
  vipctl drain -t|u service-address -r server-address
  vipctl -L|l [-n] [--stats|--rate|--thresholds|--persistent-conn] [--exact] [-t|u service-address]
        [--json]
  vipctl -L|l -c [--persistent-conn] [-t|u service-address] [--client ip] [-r server-address]
        [--limit n] [--json]
  vipctl -L|l --timeout [--json]
  vipctl -Z [-t|u service-address]
  vipctl --set tcp tcpfin udp
  vipctl -S [-n]                  (also: vipctl save)
  vipctl health [-t|u service-address] [--json]
  vipctl health --release [-t|u service-address]
  vipctl trace [-t|u service-address] [--client ip] [-r server-address] [--seconds s] [--json]
  vipctl status|stats [--json]
  vipctl metrics|reload
  vipctl drain|resume --box       vipctl box [--json]
  vipctl -h|-v

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options (only what is given changes)
  --delete-service  -D        delete virtual service
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options (only what is given changes)
  --delete-server   -d        delete real server
  drain                       weight 0: no new connections, existing ones run to their end
  --list            -L|-l     list the table (what vipctl does without a command)
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values in seconds (0 keeps a value)
  --save            -S        print the running configuration as TOML (vipd --check accepts it)
  --clear           -C        not offered: delete services one by one (-D)
  --restore         -R        not offered: put a saved configuration in vipd's file, reload
  health                      health check state of every real server, the checks that
                              could not run for a fault of the box's own, the held verdicts
  health --release            apply the down verdicts the mass-transition guard holds
                              (health.max_down_percent), of one service or all
  trace                       the four steps of live connections matching -t, --client and -r:
                              the addresses, ports and MACs vipd saw and wrote, per connection
                              (the workers record for --seconds, default 2, a bounded sample)
  status                      ports, neighbours, snapshot generation
  stats                       every dataplane counter (each drop reason), summed and per worker
  metrics                     what Prometheus scrapes from /metrics
  reload                      re-read vipd's configuration file (as SIGHUP)
  drain --box                 scale-out maintenance switch: withdraw every VIP from BGP, keep
                              forwarding what the router still sends (returns once withdrawn)
  resume --box                announce the VIPs again (those with a real server up)
  box                         the box's scale-out state: drain switch, each VIP's announcement
                              and why, the consistent-hash tables' fingerprints (equal on
                              every box of one ECMP group)
  --help            -h        display this help message
  --version         -v        display the version

Options:
  --tcp-service  -t service-address   service-address is vip:port ([vip6]:port for IPv6)
  --udp-service  -u service-address   service-address is vip:port
  --scheduler    -s scheduler         one of wlc|lc|rr|wrr|sh|maglev (ipvsadm's mh is maglev),
                                      the default scheduler is maglev (ipvsadm's is wlc)
  --sched-flags  -b flags             sh-fallback,sh-port (scheduler sh); -E -b none clears them
  --persistent   -p [timeout]         persistent service: a client keeps its real server until
                                      timeout seconds (default 300) after its last connection;
                                      -E -p 0 makes the service not persistent
  --netmask      -M netmask           granularity of persistence: clients of a network share a
                                      real server (255.255.255.0; IPv6: a prefix length, 64)
  --mode nat|fnat|dr|tunnel           the service's default forwarding method (default nat);
                                      -g|-i|-m with -A|-E say the same; fnat needs the
                                      service's local addresses (-z)
  --laddr        -z address           a full-NAT local address (DPVS's -z), repeatable: the
                                      service's whole list (-E replaces it)
  --lports       first-last           full-NAT local ports (default 1024-65535)
  --real-server  -r server-address    server-address is ip[:port] (default: the service port)
  --gatewaying   -g                   gatewaying (direct routing)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
                                      (-a without one of them: the service's mode)
  --weight       -w weight            capacity of real server, 0..65535 (default 1, 0 = drained);
                                      -e changes it only when given
  --u-threshold  -x uthreshold        upper threshold of connections: the server takes no new
                                      connection at that many (whole box; 0 = none)
  --l-threshold  -y lthreshold        lower threshold: it takes new ones again below it
                                      (default: below 3/4 of the upper one)
  --dead-flows drop|keep              connections to a failed real server: drop (default, as
                                      IPVS expire_nodest_conn: clients retry at once) or keep
  --hash 5-tuple|3-tuple              what maglev hashes: the connection (default) or client
                                      address, VIP and protocol (fragments without their first)
  --sorry-server server-address       gets new connections only while no real server can
                                      (keepalived's sorry_server)
  --interface name                    port the VIP is reached on (default: the port whose
                                      subnet holds it, else the first)

Check options (keepalived's TCP_CHECK and HTTP_GET), with -A|E for the service's real servers,
with -a|e to override them for one real server:
  --check tcp|http|none               check type; none: no check (-A|E), exempt this server (-a|e)
  --check-path path                   HTTP: path of the GET (default /)            (url path)
  --check-status code                 HTTP: status of a healthy answer (default 200) (status_code)
  --check-host host                   HTTP: Host header (default: the checked address) (virtualhost)
  --check-port port                   port to check (default: the real server's)   (connect_port)
  --check-address ip                  -a|e: address to check (default: the server's) (connect_ip)
  --check-interval seconds            time between checks (default 2)              (delay_loop)
  --check-timeout seconds             time a check may take (default 1)            (connect_timeout)
  --rise n                            successes that bring a server back (default 2)
  --fall n                            failures that take it down (default 3)       (retry)

Listing options:
  --connection   -c                   output of current connections (a bounded sample of the
                                      workers' flow tables, with state and expiry); with
                                      --persistent-conn the persistence entries instead
  --persistent-conn                   output of persistent connection info (PersistConn)
  --thresholds                        output of thresholds information
  --client ip                         -c, trace: only connections from this client
  --limit n                           -c: sample at most n connections; trace: at most n
                                      frames per worker (default 256)
  --seconds s                         trace: how long the workers record (0.1..10, default 2)
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --numeric      -n                   numeric output of addresses and ports: vipctl never
                                      resolves names (addresses are numeric in and out),
                                      -n is accepted out of habit
  --json                              the API's JSON instead of a table (every listing)

Connecting:
  --socket path                       vipd's local admin socket (api.socket; $VIPCTL_SOCKET);
                                      no token needed. Default: /run/vipd/api.sock when it
                                      exists and --api is not given
  --api address                       vipd's API: host:port, http://host:port or https://host:port
                                      (default 127.0.0.1:9180; $VIPCTL_API)
  --token-file file                   file with the API's bearer token ($VIPCTL_TOKEN_FILE),
                                      needed when vipd's api.token_file is set
  --cacert file                       https: the CA certificate (PEM) that signed vipd's
                                      ($VIPCTL_CACERT)
  --insecure                          https: accept any certificate (encrypted, not authenticated)

Changes are checked by vipd's configuration validator and each applies as one new snapshot,
or is refused with the field named and changes nothing. They are not written to vipd's file:
`vipctl -S > FILE` saves them (ipvsadm-save), a reload (SIGHUP) puts the file back in force.
Exit status: 0 done, 1 refused or vipd not reachable, 2 usage error. docs/api.md: the API.
";
