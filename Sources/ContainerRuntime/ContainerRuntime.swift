import PlaneCore

/// The seam between the drone and whatever runs backends (Docker, runc/crun, a plugin).
/// The drone never names a concrete runtime; it gets one from `RuntimeRegistry`.
///
/// Contract (the runtime plugin protocol follows it call for call):
/// - Every call is about one backend id; a runtime may hold backends of other drones
///   (a shared Docker daemon) and must only ever see and touch its own drone's.
/// - `validate` checks the spec (options, network mode, mounts) without side effects and
///   fails with `.invalidSpec`; `prepare` and `start` validate too, before creating anything.
/// - `prepare` makes the image available (pull/unpack per the pull policy); idempotent.
///   An image that cannot be had fails with `.imageUnavailable` naming the image.
/// - `start` creates and starts the backend and returns its handle; a second start of a
///   backend that exists fails with `.alreadyExists`.
/// - `stop` sends SIGTERM, waits up to `grace`, then SIGKILL; `remove` frees everything
///   (container, writable layer, port). Both are idempotent: an unknown backend succeeds.
/// - `status` of an unknown backend is `.unknown`, not an error.
/// - `events` delivers exits and OOM kills of this drone's backends for as long as the
///   runtime lives (re-establishing its source when needed).
/// - `logs` yields the backend's output lines from its start, then follows until it ends
///   (the stream finishes once the process has exited and its output is read). Lines carry
///   times that strictly increase per backend, the same on every read, when the runtime
///   can give them: the drone resumes after the last time it published.
/// - `wait(for:)` returns once the backend's process has ended, with how it ended
///   (`exited`, `killed`), or `unknown` when the runtime holds nothing for it; it never
///   returns for a running backend. Runtimes that can wait natively say so
///   (`RuntimeCapabilities.waits`); the others get a default that asks `status` every
///   `RuntimeWaitDefaults.pollInterval`. Cancelling the calling task ends the wait.
/// - `list` returns the handles of this drone's backends, running or not.
/// - Errors are `RuntimeError`; `.unavailable` means the runtime itself is down.
public protocol ContainerRuntime: Sendable {
    var descriptor: RuntimeDescriptor { get }

    func validate(_ spec: BackendSpec) throws(RuntimeError)
    func prepare(_ spec: BackendSpec) async throws(RuntimeError)
    func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle
    func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus
    func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError)
    func remove(_ backend: BackendID) async throws(RuntimeError)
    func events() -> AsyncStream<RuntimeEvent>
    func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error>
    func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample
    func list() async throws(RuntimeError) -> [RuntimeHandle]
    /// The host process id of the backend's main process, when the runtime knows it (for
    /// checking, with host networking, that the listener on its port is its own); nil
    /// otherwise.
    func mainProcessID(of backend: BackendID) async throws(RuntimeError) -> Int32?
    /// How the backend ended, once it has (Nomad's `WaitTask` in spirit).
    func wait(for backend: BackendID) async throws(RuntimeError) -> RuntimeStatus
}

/// The default `wait(for:)` of runtimes that cannot wait natively.
public enum RuntimeWaitDefaults {
    public static let pollInterval: Duration = .seconds(2)
}

extension ContainerRuntime {
    public func mainProcessID(of backend: BackendID) async throws(RuntimeError) -> Int32? { nil }

    /// Asks `status` every `RuntimeWaitDefaults.pollInterval` until the process is not
    /// running; a cancelled wait returns `.unknown` at once.
    public func wait(for backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        while !Task.isCancelled {
            let status = try await status(of: backend)
            switch status {
            case .running, .created: break
            case .exited, .killed, .unknown: return status
            }
            try? await Task.sleep(for: RuntimeWaitDefaults.pollInterval)
        }
        return .unknown
    }

    /// The checks every runtime shares: the network mode is supported, mounts are allowed,
    /// the limits are ones the kernel takes, the port is set, and options are only given
    /// to runtimes that accept some.
    public func validateCommon(_ spec: BackendSpec) throws(RuntimeError) {
        let capabilities = descriptor.capabilities
        if !capabilities.networkModes.contains(spec.network.kind) {
            let supported = capabilities.networkModes.map(\.rawValue).sorted().joined(separator: ", ")
            throw RuntimeError(.invalidSpec, "Runtime '\(descriptor.name)' does not support network mode '\(spec.network.kind.rawValue)'; it supports: \(supported).")
        }
        if !spec.mounts.isEmpty, !capabilities.mounts {
            throw RuntimeError(.invalidSpec, "Runtime '\(descriptor.name)' does not support mounts.")
        }
        try spec.limits.validate()
        if spec.port == 0 { throw RuntimeError(.invalidSpec, "The backend port must be 1 to 65535.") }
        if let pattern = capabilities.imagePattern {
            guard let regex = try? Regex(pattern) else { throw RuntimeError(.internal, "Runtime '\(descriptor.name)' declares an image pattern that is not a regular expression: \(pattern).") }
            if (try? regex.firstMatch(in: spec.image)) == nil {
                throw RuntimeError(.invalidSpec, "Runtime '\(descriptor.name)' takes images matching \(pattern); '\(spec.image)' is not one.")
            }
        }
        if spec.options.count > 0, capabilities.optionsSchema == nil {
            throw RuntimeError(.invalidSpec, "Runtime '\(descriptor.name)' takes no options, but got: \(spec.options.keys.joined(separator: ", ")).")
        }
    }
}
