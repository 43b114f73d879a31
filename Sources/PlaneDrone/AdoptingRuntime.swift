import ContainerRuntime
import PlaneCore
import Synchronization

/// The drone's runtime with adoption (issue 15): a backend that took a warm pool's
/// pre-started process is known to the cluster by its own id and to the runtime by the warm
/// id the process was started under. Every call about the backend goes to the runtime under
/// the warm id; events and listings come back under the backend's id. Backends without an
/// adoption (and warm ones not yet taken) pass through unchanged. The adoptions are kept in
/// the drone's store (`adopted_backend`) and loaded at start, before recovery lists the
/// runtime's backends.
final class AdoptingRuntime: ContainerRuntime {
    let inner: any ContainerRuntime
    private struct Table {
        var runtimeID: [BackendID: BackendID] = [:]
        var backendID: [BackendID: BackendID] = [:]
    }
    private let table = Mutex(Table())

    init(_ inner: any ContainerRuntime) {
        self.inner = inner
    }

    /// `backend` is the process `warm` from now on.
    func adopt(_ backend: BackendID, as warm: BackendID) {
        table.withLock {
            $0.runtimeID[backend] = warm
            $0.backendID[warm] = backend
        }
    }

    /// The adoptions found in the store.
    func load(_ adoptions: [BackendID: BackendID]) {
        for (backend, warm) in adoptions { adopt(backend, as: warm) }
    }

    /// The runtime's id of `backend`.
    func runtimeID(of backend: BackendID) -> BackendID { table.withLock { $0.runtimeID[backend] } ?? backend }

    /// The cluster's id of what the runtime calls `id`.
    func backendID(of id: BackendID) -> BackendID { table.withLock { $0.backendID[id] } ?? id }

    var descriptor: RuntimeDescriptor { inner.descriptor }
    func validate(_ spec: BackendSpec) throws(RuntimeError) { try inner.validate(spec) }
    func prepare(_ spec: BackendSpec) async throws(RuntimeError) { try await inner.prepare(spec) }
    func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle { try await inner.start(spec) }
    func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus { try await inner.status(of: runtimeID(of: backend)) }
    func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError) { try await inner.stop(runtimeID(of: backend), grace: grace) }
    func remove(_ backend: BackendID) async throws(RuntimeError) { try await inner.remove(runtimeID(of: backend)) }
    func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error> { inner.logs(of: runtimeID(of: backend), follow: follow) }
    func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample { try await inner.stats(of: runtimeID(of: backend)) }
    func mainProcessID(of backend: BackendID) async throws(RuntimeError) -> Int32? { try await inner.mainProcessID(of: runtimeID(of: backend)) }
    func wait(for backend: BackendID) async throws(RuntimeError) -> RuntimeStatus { try await inner.wait(for: runtimeID(of: backend)) }

    func list() async throws(RuntimeError) -> [RuntimeHandle] {
        try await inner.list().map { handle in
            var translated = handle
            translated.backendID = backendID(of: handle.backendID)
            return translated
        }
    }

    func events() -> AsyncStream<RuntimeEvent> {
        let source = inner.events()
        return AsyncStream { continuation in
            let task = Task {
                for await event in source {
                    var translated = event
                    translated.backendID = self.backendID(of: event.backendID)
                    continuation.yield(translated)
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
