import ContainerRuntime
import PlaneCore
import Testing
@testable import PlaneDrone

struct BackendLifecycleTests {
    typealias Action = BackendLifecycle.Action

    /// Runs events through a new machine; returns every action and the machine.
    func run(_ events: [BackendLifecycle.Event], from machine: BackendLifecycle = BackendLifecycle()) -> ([Action], BackendLifecycle) {
        var machine = machine
        var actions: [Action] = []
        for event in events { actions += machine.handle(event) }
        return (actions, machine)
    }

    func reports(_ actions: [Action]) -> [BackendState] {
        actions.compactMap { if case .report(let state) = $0 { state } else { nil } }
    }

    @Test func happyPathToSwept() {
        let (actions, machine) = run([.spawned, .loaded(address: "127.0.0.1:4000"), .probeAnswered, .idleExpired, .cleanedUp])
        #expect(reports(actions) == [.loading, .starting, .ready, .swept])
        #expect(actions == [
            .report(.loading), .load,
            .report(.starting), .startMonitor, .probe(address: "127.0.0.1:4000"),
            .addRoute(address: "127.0.0.1:4000"), .report(.ready), .watchIdle,
            .cancelWork, .removeRoute, .stopMonitor, .report(.swept), .stopAndRemove,
            .finish,
        ])
        #expect(machine.finished && machine.state == .swept)
    }

    @Test func anExitDuringTheLoadWaitsForTheLoadsResult() {
        let (actions, machine) = run([.spawned, .exited(code: 1)])
        #expect(machine.state == .loading && !machine.cleaningUp)
        #expect(reports(actions) == [.loading])
        let (all, ended) = run([.spawned, .exited(code: 1), .loaded(address: "a:1")])
        #expect(reports(all) == [.loading, .starting, .errorStarting] && ended.state == .errorStarting)
        #expect(!all.contains { if case .probe = $0 { true } else { false } })
        // Its output, which says why it ended, is still published: the monitor starts and
        // is stopped (keeping its log follower until the output is read) before the cleanup.
        let monitorActions = all.filter { $0 == .startMonitor || $0 == .stopMonitor || $0 == .stopAndRemove }
        #expect(monitorActions == [.startMonitor, .stopMonitor, .stopAndRemove])
    }

    @Test func everyFailureEndsTerminalWithCleanup() {
        let cases: [([BackendLifecycle.Event], BackendState)] = [
            ([.spawned, .loadFailed(reason: "no image")], .errorLoading),
            // An exit that overtakes the start's result: the start had succeeded.
            ([.spawned, .exited(code: 1), .loaded(address: "a:1")], .errorStarting),
            ([.spawned, .exited(code: 1), .loadFailed(reason: "start failed")], .errorLoading),
            ([.spawned, .loaded(address: "a:1"), .exited(code: 1)], .errorStarting),
            ([.spawned, .loaded(address: "a:1"), .notRunning], .errorStarting),
            ([.spawned, .loaded(address: "a:1"), .probeTimedOut], .timedOutBeforeReady),
            ([.spawned, .loaded(address: "a:1"), .probeAnswered, .exited(code: 1)], .failed),
            ([.spawned, .loaded(address: "a:1"), .probeAnswered, .exited(code: 137)], .failed),
            ([.spawned, .loaded(address: "a:1"), .probeAnswered, .exited(code: 0)], .exited),
            ([.spawned, .loaded(address: "a:1"), .probeAnswered, .notRunning], .failed),
            ([.spawned, .terminateRequested], .terminated),
            ([.spawned, .loaded(address: "a:1"), .terminateRequested], .terminated),
            ([.spawned, .loaded(address: "a:1"), .probeAnswered, .terminateRequested], .terminated),
        ]
        for (events, terminal) in cases {
            let (actions, machine) = run(events)
            #expect(machine.state == terminal, "\(events)")
            #expect(reports(actions).last == terminal)
            // The container is always stopped and removed (v0.3.10 left ErrorLoading ones).
            #expect(actions.last == .stopAndRemove, "\(events)")
            #expect(actions.contains(.cancelWork))
            // A route is removed exactly when one was added; the monitor likewise.
            #expect(actions.contains(.removeRoute) == actions.contains { if case .addRoute = $0 { true } else { false } })
            #expect(actions.contains(.stopMonitor) == actions.contains(.startMonitor))
        }
    }

    @Test func terminalStatesAreNeverLeft() {
        var (_, machine) = run([.spawned, .loaded(address: "a:1"), .probeAnswered, .terminateRequested])
        for event: BackendLifecycle.Event in [.exited(code: 0), .idleExpired, .terminateRequested, .probeAnswered, .loaded(address: "b:2")] {
            #expect(machine.handle(event).isEmpty)
            #expect(machine.state == .terminated)
        }
        #expect(machine.handle(.cleanedUp) == [.finish])
        #expect(machine.handle(.cleanedUp).isEmpty)
    }

    @Test func lateResultsChangeNothing() {
        // A probe answer after the timeout, a second terminate, an idle tick while starting.
        let (actions, machine) = run([.spawned, .loaded(address: "a:1"), .idleExpired, .probeTimedOut, .probeAnswered, .terminateRequested])
        #expect(machine.state == .timedOutBeforeReady)
        #expect(reports(actions) == [.loading, .starting, .timedOutBeforeReady])
    }

    @Test func resumingAfterARestart() {
        var ready = BackendLifecycle.resumed(state: .ready, address: "a:1")
        #expect(ready.resume() == [.watchIdle])
        #expect(ready.handle(.idleExpired) == [.cancelWork, .removeRoute, .stopMonitor, .report(.swept), .stopAndRemove])
        var starting = BackendLifecycle.resumed(state: .starting, address: "a:1")
        #expect(starting.resume() == [.probe(address: "a:1")])
        var loading = BackendLifecycle.resumed(state: .loading, address: nil)
        #expect(loading.resume() == [.cancelWork, .report(.errorLoading), .stopAndRemove])
        var ended = BackendLifecycle.resumed(state: .failed, address: nil)
        #expect(ended.resume() == [.stopAndRemove])
        #expect(ended.handle(.cleanedUp) == [.finish])
    }
}

/// The lease's events: a lapse or a decision made elsewhere ends a backend in any state.
struct BackendLifecycleLeaseTests {
    @Test(arguments: [0, 1, 2])
    func aLeaseThatLapsesEndsTheBackendAsLost(_ steps: Int) {
        var machine = BackendLifecycle()
        let path: [BackendLifecycle.Event] = [.spawned, .loaded(address: "a:1"), .probeAnswered]
        for event in path.prefix(steps + 1) { _ = machine.handle(event) }
        let actions = machine.handle(.leaseExpired)
        #expect(machine.state == .lost)
        #expect(actions.contains(.report(.lost)) && actions.contains(.stopAndRemove))
        #expect(machine.handle(.leaseExpired).isEmpty, "once")
    }

    @Test func aStateTheClusterRecordedIsKept() {
        var machine = BackendLifecycle.resumed(state: .ready, address: "a:1")
        let actions = machine.handle(.endedElsewhere(.lost))
        #expect(machine.state == .lost && actions.contains(.removeRoute) && actions.contains(.report(.lost)))
        var other = BackendLifecycle.resumed(state: .ready, address: "a:1")
        _ = other.handle(.endedElsewhere(.ready))
        #expect(other.state == .lost, "a live state from elsewhere is no ending; it counts as lost")
        var ended = BackendLifecycle.resumed(state: .ready, address: "a:1")
        _ = ended.handle(.idleExpired)
        #expect(ended.handle(.endedElsewhere(.lost)).isEmpty && ended.state == .swept, "a terminal state is never left")
    }
}

/// Every runtime observation means one lifecycle event, whichever path brought it.
struct RuntimeObservationTests {
    @Test func statusesAndEventsMapToOneMeaning() {
        #expect(BackendLifecycle.observed(RuntimeStatus.running(address: nil)) == nil)
        #expect(BackendLifecycle.observed(RuntimeStatus.created) == nil)
        #expect(BackendLifecycle.observed(RuntimeStatus.exited(code: 3)) == .exited(code: 3))
        #expect(BackendLifecycle.observed(RuntimeStatus.killed(signal: 15, outOfMemory: false)) == .exited(code: 143))
        #expect(BackendLifecycle.observed(RuntimeStatus.killed(signal: nil, outOfMemory: true)) == .exited(code: 137))
        #expect(BackendLifecycle.observed(RuntimeStatus.killed(signal: .max, outOfMemory: false)) == .exited(code: .max), "a plugin's signal number cannot overflow")
        #expect(BackendLifecycle.observed(RuntimeStatus.unknown) == .notRunning)
        #expect(BackendLifecycle.observed(RuntimeEvent.Kind.outOfMemory) == .exited(code: 137))
        #expect(BackendLifecycle.observed(RuntimeEvent.Kind.exited(code: 0)) == .exited(code: 0))
    }

    /// Recovery as events: what a restarted drone finds decides the terminal state.
    @Test func whatARestartedDroneFindsEndsAsTheLifecycleSays() {
        func ending(_ state: BackendState, _ status: RuntimeStatus) -> BackendState {
            var machine = BackendLifecycle.resumed(state: state, address: "a:1")
            if let event = BackendLifecycle.observed(status) { _ = machine.handle(event) } else { _ = machine.resume() }
            return machine.state
        }
        #expect(ending(.starting, .exited(code: 0)) == .errorStarting)
        #expect(ending(.starting, .unknown) == .errorStarting)
        #expect(ending(.ready, .exited(code: 0)) == .exited)
        #expect(ending(.ready, .exited(code: 2)) == .failed)
        #expect(ending(.ready, .killed(signal: 9, outOfMemory: true)) == .failed)
        #expect(ending(.ready, .unknown) == .failed)
        #expect(ending(.ready, .running(address: nil)) == .ready)
        #expect(ending(.loading, .running(address: nil)) == .errorLoading)
    }
}

/// Issue 14 on the drone: a spawn's lifetime ends it whatever it is doing, and the capacity
/// plan admits backends by memory and slots.
struct FleetDroneUnitTests {
    @Test func anExpiredLifetimeEndsTheBackendTerminatedFromAnyLiveState() {
        for prefix: [BackendLifecycle.Event] in [[.spawned], [.spawned, .loaded(address: "a")], [.spawned, .loaded(address: "a"), .probeAnswered]] {
            var machine = BackendLifecycle()
            for event in prefix { _ = machine.handle(event) }
            let actions = machine.handle(.lifetimeExpired)
            #expect(machine.state == .terminated && actions.contains(.report(.terminated)) && actions.contains(.stopAndRemove), "\(prefix)")
            #expect(machine.handle(.lifetimeExpired).isEmpty)
        }
    }

    @Test func theCapacityPlanAdmitsByMemoryAndSlots() throws {
        let plan = DroneCapacityPlan(memoryBytes: 1 << 30, cpus: 2, maxBackends: 3)
        try plan.admit(memory: 512 << 20, reservedMemory: 512 << 20, liveBackends: 2)
        #expect(throws: DroneError.self) { try plan.admit(memory: 512 << 20 + 1, reservedMemory: 512 << 20, liveBackends: 0) }
        #expect(throws: DroneError.self) { try plan.admit(memory: 0, reservedMemory: 0, liveBackends: 3) }
        #expect(throws: DroneError.self) { try plan.admit(memory: .max, reservedMemory: 2, liveBackends: 0) }
        let capacity = plan.capacity(reservedMemory: 768 << 20, liveBackends: 1)
        #expect(capacity == DroneCapacity(memoryBytes: 1 << 30, memoryFreeBytes: 256 << 20, cpus: 2, backendSlots: 3, backendSlotsFree: 2))
        #expect(plan.capacity(reservedMemory: 2 << 30, liveBackends: 9).memoryFreeBytes == 0)
        #expect(plan.capacity(reservedMemory: 2 << 30, liveBackends: 9).backendSlotsFree == 0)
        #expect((DroneCapacityPlan.hostMemoryBytes() ?? 0) > 1 << 28)
    }
}
