import ContainerRuntime
import PlaneCore

/// One backend's lifecycle as a pure state machine: events in, actions out. The drone's
/// `BackendActor` performs the actions (runtime calls, probes, routes, reports) and feeds
/// the results back as events. No I/O here, so every path is unit-tested.
///
/// ```
/// Loading ──loaded──▶ Starting ──probe answered──▶ Ready ──idle──▶ Swept
///    │                   ├──exited / not running──▶ ErrorStarting
///    │                   └──no answer in time──▶ TimedOutBeforeReady
///    │                                           Ready ──exit 0──▶ Exited
///    └──load failed──▶ ErrorLoading              Ready ──exit≠0──▶ Failed
/// Loading / Starting / Ready ──terminate──▶ Terminated
/// Loading / Starting / Ready ──lease expired / ended elsewhere──▶ Lost (or the cluster's state)
/// every terminal state: route removed, container stopped and removed
/// ```
///
/// Unlike v0.3.10, every terminal state (including `ErrorLoading`) stops and removes the
/// container, no error leaves a backend non-terminal, and a termination that arrives while
/// loading is honoured.
public struct BackendLifecycle: Sendable, Hashable {
    public enum Event: Sendable, Hashable {
        /// A new backend: begin loading.
        case spawned
        /// The runtime started it; the process listens (or will) on `address`.
        case loaded(address: String)
        case loadFailed(reason: String)
        /// Any HTTP answer from the backend.
        case probeAnswered
        /// No answer within the startup timeout.
        case probeTimedOut
        /// The runtime reports the process is not running (while starting).
        case notRunning
        /// The process ended with `code`.
        case exited(code: Int32)
        /// No request and no open connection for `max_idle_secs`.
        case idleExpired
        case terminateRequested
        /// The spawn's `max_lifetime_secs` is over: it ends `Terminated`, busy or not.
        case lifetimeExpired
        /// The drone's lease lapsed (or was revoked) while this backend holds a lock: it
        /// stops, and the cluster may give its lock to another backend.
        case leaseExpired
        /// The cluster recorded this terminal state while the drone could not report (e.g.
        /// `Lost` during a partition): the backend stops and keeps that state.
        case endedElsewhere(BackendState)
        /// Stop and remove finished (a failing runtime is retried with backoff until the
        /// agent stops; then the next start's recovery removes what is left).
        case cleanedUp
    }

    /// The event a runtime's answer about a backend means: nil while it runs (or was
    /// created and not started yet); an exit code for an exit, 128 + the signal for a kill
    /// (137 for the OOM killer); `notRunning` when the runtime holds nothing for it. Every
    /// runtime observation goes through here (a wait's result, a status, an event).
    public static func observed(_ status: RuntimeStatus) -> Event? {
        switch status {
        case .running, .created: nil
        case .exited(let code): .exited(code: code)
        case .killed(let signal, _): .exited(code: Int32(clamping: 128 + Int(signal ?? 9)))
        case .unknown: .notRunning
        }
    }

    public static func observed(_ event: RuntimeEvent.Kind) -> Event {
        switch event {
        case .exited(let code): .exited(code: code)
        case .outOfMemory: .exited(code: 137)
        }
    }

    public enum Action: Sendable, Hashable {
        /// Prepare (pull) and start the container.
        case load
        /// Probe the address until it answers or the startup timeout passes.
        case probe(address: String)
        /// Start publishing logs, stats and the DNS record.
        case startMonitor
        case stopMonitor
        case addRoute(address: String)
        case removeRoute
        /// Announce the state (store durably, then the outbox sends it).
        case report(BackendState)
        /// Watch for idleness.
        case watchIdle
        /// Cancel whatever load or probe is in flight.
        case cancelWork
        /// Stop with the grace period, then remove.
        case stopAndRemove
        /// Nothing more will happen to this backend.
        case finish
    }

    public private(set) var state: BackendState
    /// The backend's address once loaded.
    public private(set) var address: String?
    /// Set once the terminal cleanup has been ordered.
    public private(set) var cleaningUp = false
    public private(set) var finished = false
    /// A route was added and not yet removed.
    private var routed = false
    private var monitoring = false
    /// An exit the runtime reported while the load was still running: its start may have
    /// succeeded already (the exit event can overtake the start's result), so the load's
    /// result decides whether this is `ErrorStarting` or `ErrorLoading`.
    private var exitedWhileLoading = false

    public init(state: BackendState = .loading, address: String? = nil) {
        self.state = state
        self.address = address
    }

    /// A machine for a backend found running after a drone restart: it keeps its state.
    public static func resumed(state: BackendState, address: String?) -> BackendLifecycle {
        var machine = BackendLifecycle(state: state, address: address)
        machine.routed = state == .ready
        machine.monitoring = state == .starting || state == .ready
        return machine
    }

    /// The actions that bring a resumed machine back to work (or clean up a terminal one).
    public mutating func resume() -> [Action] {
        switch state {
        case .loading:
            // The load was interrupted; its container, if any, has an unknown state.
            return terminate(as: .errorLoading)
        case .starting:
            guard let address else { return terminate(as: .errorStarting) }
            return [.probe(address: address)]
        case .ready:
            return [.watchIdle]
        default:
            cleaningUp = true
            return [.stopAndRemove]
        }
    }

    public mutating func handle(_ event: Event) -> [Action] {
        if finished { return [] }
        if state.isTerminal {
            // Only the cleanup's completion matters now.
            if event == .cleanedUp {
                finished = true
                return [.finish]
            }
            return []
        }
        switch (state, event) {
        case (.loading, .spawned):
            return [.report(.loading), .load]
        case (.loading, .loaded(let address)):
            self.address = address
            state = .starting
            monitoring = true
            // It already ended: no probe, but its output (why it ended) is still published.
            if exitedWhileLoading { return [.report(.starting), .startMonitor] + terminate(as: .errorStarting) }
            return [.report(.starting), .startMonitor, .probe(address: address)]
        case (.loading, .loadFailed):
            return terminate(as: .errorLoading)
        case (.loading, .exited):
            exitedWhileLoading = true
            return []
        case (.starting, .probeAnswered):
            guard let address else { return terminate(as: .errorStarting) }
            state = .ready
            routed = true
            return [.addRoute(address: address), .report(.ready), .watchIdle]
        case (.starting, .probeTimedOut):
            return terminate(as: .timedOutBeforeReady)
        case (.starting, .notRunning), (.starting, .exited):
            return terminate(as: .errorStarting)
        case (.ready, .exited(let code)):
            return terminate(as: code == 0 ? .exited : .failed)
        case (.ready, .notRunning):
            return terminate(as: .failed)
        case (.ready, .idleExpired):
            return terminate(as: .swept)
        case (_, .terminateRequested), (_, .lifetimeExpired):
            return terminate(as: .terminated)
        case (_, .leaseExpired):
            return terminate(as: .lost)
        case (_, .endedElsewhere(let decided)):
            return terminate(as: decided.isTerminal ? decided : .lost)
        default:
            // Late or repeated results (a probe answer after a timeout, ...) change nothing.
            return []
        }
    }

    /// Enter a terminal state: stop everything, announce it, clean up.
    mutating func terminate(as terminal: BackendState) -> [Action] {
        state = terminal
        cleaningUp = true
        var actions: [Action] = [.cancelWork]
        if routed { actions.append(.removeRoute) }
        if monitoring { actions.append(.stopMonitor) }
        routed = false
        monitoring = false
        actions += [.report(terminal), .stopAndRemove]
        return actions
    }
}
