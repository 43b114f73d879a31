import ContainerRuntime
import PlaneCore
import Synchronization

/// The machine a `ScriptedRuntime` runs on: one per test, shared by every drone of the
/// test like a Docker daemon shared by two drones. It holds the backends of all drones,
/// the images it "has", and the faults a test scripts (a slow pull, a dead runtime, lost
/// events).
///
/// Backends behave like the `plane-test-server` image (see `ScriptedBackend`), served
/// in-process on loopback, so the agent's real readiness probe and a test's HTTP requests
/// reach them.
public final class ScriptedHost: Sendable {
    /// What starting an image does.
    public enum ImageBehavior: Sendable, Hashable {
        /// Serves like `plane-test-server` (honours `EXIT_CODE`, `EXIT_TIMEOUT`, `IGNORE_SIGTERM`).
        case testServer
        /// `start` fails with `.internal` and this message (a broken entrypoint).
        case failsToStart(String)
    }

    /// Faults and capabilities a test can change at any time.
    public struct Script: Sendable {
        /// Images `prepare` can "pull"; any other fails with `.imageUnavailable`.
        public var images: [String: ImageBehavior] = ["plane-test-server": .testServer]
        /// How long `prepare` takes (a slow pull).
        public var prepareDelay: Duration = .zero
        /// How long `start` takes. Like a daemon finishing a create the caller gave up on,
        /// the start completes even when the calling task is cancelled meanwhile.
        public var startDelay: Duration = .zero
        /// When false, every call fails with `.unavailable` (the daemon is down).
        public var available = true
        /// When true, a call made from a cancelled task fails (`.unavailable`) without
        /// reaching the "daemon", as an HTTP client's request does (Docker's API).
        public var failsWhenCancelled = false
        /// When true, exits happen but no event is delivered (a lost event stream).
        public var dropsEvents = false
        public init() {}
    }

    struct Subscriber {
        var drone: DroneID
        var continuation: AsyncStream<RuntimeEvent>.Continuation
    }

    struct State {
        var script = Script()
        var backends: [BackendID: ScriptedBackend] = [:]
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriber = 0
        var calls: [String: Int] = [:]
    }

    let state = Mutex(State())

    public init(script: Script = Script()) {
        state.withLock { $0.script = script }
    }

    /// Changes the script; later calls see the change.
    public func update(_ change: (inout Script) -> Void) {
        state.withLock { change(&$0.script) }
    }

    public var script: Script { state.withLock { $0.script } }

    /// How often each `ContainerRuntime` call was made, by name (`start`, `stop`, ...).
    public func callCount(_ name: String) -> Int { state.withLock { $0.calls[name] ?? 0 } }

    /// Backends on this host, of every drone.
    public var backendIDs: [BackendID] { state.withLock { Array($0.backends.keys) } }

    /// Ends a running backend as if its process exited with `code` (a crash, an OOM kill).
    public func crash(_ backend: BackendID, code: Int32) {
        state.withLock { $0.backends[backend] }?.exit(code: code)
    }

    func count(_ call: String) throws(RuntimeError) -> Script {
        let script = state.withLock { state in
            state.calls[call, default: 0] += 1
            return state.script
        }
        guard script.available else {
            throw RuntimeError(.unavailable, "The scripted runtime is unavailable (the test made it so).")
        }
        if script.failsWhenCancelled && Task.isCancelled {
            throw RuntimeError(.unavailable, "The scripted runtime's \(call) was called from a cancelled task.")
        }
        return script
    }

    func backend(_ id: BackendID, of drone: DroneID) -> ScriptedBackend? {
        state.withLock { state in state.backends[id].flatMap { $0.spec.droneID == drone ? $0 : nil } }
    }

    /// Waiters of `ScriptedRuntime.wait(for:)`: woken by the backend's end itself, so an
    /// event stream that drops events (`dropsEvents`) does not hide an exit from them.
    let exits = BackendExitSignals()

    /// Publishes an exit to the drone's event streams, unless the script drops events.
    func deliver(_ event: RuntimeEvent, drone: DroneID) {
        let subscribers: [AsyncStream<RuntimeEvent>.Continuation] = state.withLock { state in
            guard !state.script.dropsEvents else { return [] }
            return state.subscribers.values.filter { $0.drone == drone }.map(\.continuation)
        }
        for continuation in subscribers { continuation.yield(event) }
    }

    func subscribe(drone: DroneID) -> AsyncStream<RuntimeEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: RuntimeEvent.self)
        let key = state.withLock { state in
            let key = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[key] = Subscriber(drone: drone, continuation: continuation)
            return key
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.subscribers.removeValue(forKey: key) }
        }
        return stream
    }
}
