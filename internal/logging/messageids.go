package logging

// MESSAGE_IDs, one per kind of event an operator may have to act on. They are
// part of the contract: never change one, add new ones instead (generated
// once from a random source, 128 bits as 32 lowercase hex digits). Every id
// has exactly one entry in systemd/nodekeeper.catalog; the fields listed for
// each are the ones its catalog entry refers to, so a log call with that id
// must attach them (with the Key… attribute keys).
const (
	// MsgIRQSpreadProblem: the irq check found a NIC's queue IRQs crowded
	// onto too few CPUs, or an accelerated-networking VF missing.
	// Fields: CHECK, INTERFACE, CPUS (the CPUs the IRQs are on).
	MsgIRQSpreadProblem = "70f7b0d280b6ea1d17404a35797c62a4"

	// MsgRepairStarted: a repair of the IRQ spread is starting.
	// Fields: ACTION (irqbalance_restart | irqbalance_sighup | irq_spread).
	MsgRepairStarted = "de8070fe62daeb2c54c4f1b0f1ea4fba"

	// MsgRepairSucceeded: a repair ran and the check passed afterwards.
	// Fields: ACTION.
	MsgRepairSucceeded = "5ea27ccf80f916a9c064142ec38a05b2"

	// MsgRepairFailed: a repair could not be run, or the check still failed
	// when irq.verifyTimeout ended. Fields: ACTION, RESULT (failure |
	// verify_timeout).
	MsgRepairFailed = "4f35d36a29d16eb53719b93b779dfd87"

	// MsgRepairSkipped: a repair was due but policy held it back.
	// Fields: ACTION, REASON (cooldown | cap | dryrun | backoff).
	MsgRepairSkipped = "7df27708f0a3f23d63aa866273c01a52"

	// MsgIrqbalanceKnownBuggy: the installed irqbalance is a release that
	// never migrates an IRQ once placed. Fields: VERSION.
	MsgIrqbalanceKnownBuggy = "a3fc72bf5768fd31a23624cb48e3a6ad"

	// MsgVMPause: the VM was paused (a gap in the daemon's clock, or an Azure
	// Freeze that started). Fields: SOURCE (clock | imds), PAUSE_SECONDS.
	MsgVMPause = "b06c2a1c4cf7c7d072d7137f2b7cacd2"

	// MsgScheduledEvent: Azure announced a scheduled event (a Freeze, most
	// often) for this VM, or one changed status.
	// Fields: EVENT_TYPE, EVENT_ID, EVENT_STATUS.
	MsgScheduledEvent = "cedaad987b05e2c98af173f2a663c292"

	// MsgKubeletPinned: kubelet's unit was given AllowedCPUs (or a v1
	// cpuset) that keeps it off the net_rx CPUs. Fields: UNIT, CPUS.
	MsgKubeletPinned = "df6fccf1688aa91eee39079a76a33723"

	// MsgKubeletUnpinned: the pin was taken away (pinning turned off, or
	// `nodekeeper undo`). Fields: UNIT.
	MsgKubeletUnpinned = "82e8b1fa63027323ac2effc689f14c46"

	// MsgKubeletPinFailed: pinning kubelet failed, or the pin is not
	// enforced. Fields: UNIT.
	MsgKubeletPinFailed = "c55371bf1a31a43db50963bce38d5b60"

	// MsgCompactionRan: memory compaction ran on one NUMA node.
	// Fields: NODE, REASON (fragmentation | safety), RESULT (success |
	// failure).
	MsgCompactionRan = "eb0b3dabde43dde948780f3156568464"

	// MsgSoftirqSaturated: CPUs are saturated by softirq work (or squeezed
	// out of net_rx budget). Fields: CPUS.
	MsgSoftirqSaturated = "d1522ae394715c84d7fec3f6f742020d"

	// MsgCgroupExplosion: the number of cgroups passed symptoms.cgroupWarn.
	// Fields: CGROUPS.
	MsgCgroupExplosion = "a5ca6ef99b02801c02cbe74941d3c2c0"

	// MsgKubeletSystemCPU: kubelet's system time passed
	// symptoms.kubeletSystemCPUWarn. Fields: UNIT, CPU_SHARE.
	MsgKubeletSystemCPU = "c1a4b152247b30e6adfa709d3ebbbbf2"

	// MsgConfigReloadFailed: a reload (SIGHUP) found an invalid
	// configuration; the previous one stays in force. Fields: none beyond
	// the message.
	MsgConfigReloadFailed = "1a468568e48557513b29f5a2d69aafe5"

	// MsgIMDSUnreachable: Azure's instance metadata service could not be
	// reached or answered with errors. Fields: none beyond the message.
	MsgIMDSUnreachable = "9c807be0e142b72363eb7e35a214abd4"

	// MsgDBusLost: the connection to the system bus (systemd) was lost.
	// Fields: none beyond the message.
	MsgDBusLost = "ad6e7a8ee30571963a892a3e12171d90"

	// MsgSNATPortsHigh: the public flows towards one destination reached
	// snat.warnRatio of the node's SNAT port budget (once per episode).
	// Fields: DEMAND_PORTS, ALLOCATED_PORTS, ALLOCATED_SOURCE, DESTINATION,
	// TOP_SOURCE.
	MsgSNATPortsHigh = "e3b73e43bd21f2e8bff3233bdf30ab46"

	// MsgSNATPortsNormal: SNAT port use fell back under snat.warnRatio.
	// Fields: DEMAND_PORTS, ALLOCATED_PORTS.
	MsgSNATPortsNormal = "b426683cc5a0a44b70e066da64ef47ac"

	// MsgDNSProbeFailing: the cluster DNS probe timed out, got SERVFAIL or
	// found no server listening (once per episode). Fields: SERVER,
	// PROBE_NAME, RCODE, TIMEOUTS, ATTEMPTS, TRUNCATED.
	MsgDNSProbeFailing = "a2f453b42975401a9939301d242087e7"

	// MsgDNSProbeRecovered: the cluster DNS probe answers again in time.
	// Fields: SERVER, ANSWER_MS.
	MsgDNSProbeRecovered = "996d974028864c64ae2567ffce11afa1"

	// MsgConntrackTableFull: conntrack dropped packets, the table reached
	// conntrack.fillProblem, or the kernel logged "table full" (once per
	// episode). Fields: ENTRIES, MAX, FILL, DROP_PER_S, EARLY_DROP_PER_S,
	// TABLE_FULL_LINES.
	MsgConntrackTableFull = "d61eaef2136b4918b4939f5b8b52e57a"

	// MsgConntrackInsertFailed: conntrack insert failures are rising: new
	// entries lose a race (once per episode). Fields: INSERT_FAILED_PER_S,
	// CLASH_RESOLVE_PER_S.
	MsgConntrackInsertFailed = "76eb7f65b2994685b830096b1d53c9a2"

	// MsgDNSPodUDPDrops: a cluster DNS pod's network namespace drops UDP
	// datagrams on receive (once per episode). Fields: DNS_POD, PID,
	// UDP_RCVBUF_ERRORS_PER_S, UDP_IN_ERRORS_PER_S.
	MsgDNSPodUDPDrops = "7c6dd046bf5c44a7a245d3b2fc7ccb93"

	// MsgConntrackNormal: the conntrack check is ok again after a problem.
	// Fields: ENTRIES, MAX.
	MsgConntrackNormal = "2129095269cc44ac84a364c953040c56"

	// MsgKubeletPinEffect: one latency window after a kubelet pin, the
	// NET_RX softirq wait p99 on the net_rx CPUs before and after it.
	// Fields: CPUS, P99_BEFORE_US, P99_AFTER_US (-1: no samples).
	MsgKubeletPinEffect = "22cd202320ee4ad6a91ea6a8d12f6440"
)
