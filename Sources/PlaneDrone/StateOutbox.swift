import Logging
import NATS
import PlaneCore
import PlaneMessaging

/// Sends recorded state updates to the controllers' relay (`cluster.{c}.backend.{b}.status`,
/// reply `null`) and drops each from the store's outbox once a controller answered. Each
/// backend's updates go in order, one at a time, retried with backoff while no controller
/// answers; backends do not wait for each other. What is not acknowledged stays in the
/// store, so a NATS outage or a drone restart loses nothing. An update the store could not
/// record (its disk full or failing) is still sent, from memory, in its backend's order: the
/// cluster learns of it unless the drone restarts before it is acknowledged.
public actor StateOutbox {
    let store: DroneStore
    let messenger: PlaneMessenger
    let logger: Logger
    let requestTimeout: Duration
    let initialBackoff: Duration
    let maxBackoff: Duration

    private var queues: [BackendID: [OutboxEntry]] = [:]
    private var senders: [BackendID: Task<Void, Never>] = [:]
    private var known: Set<Int64> = []
    /// The sequence of the last update queued without a record (negative, counting down).
    private var lastUnrecorded: Int64 = 0
    private var emptyWaiters: [CheckedContinuation<Void, Never>] = []

    public init(store: DroneStore, messenger: PlaneMessenger, logger: Logger, requestTimeout: Duration = .seconds(5),
                initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(5)) {
        self.store = store
        self.messenger = messenger
        self.logger = logger
        self.requestTimeout = requestTimeout
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    /// Queues what the store still holds (after a restart).
    public func resume() async throws(DroneError) {
        for entry in try await store.pendingUpdates() { enqueue(entry) }
    }

    /// Queues an update the store has just recorded.
    public func enqueue(_ entry: OutboxEntry) {
        guard known.insert(entry.sequence).inserted else { return }
        let backend = entry.update.backend
        queues[backend, default: []].append(entry)
        if senders[backend] == nil {
            senders[backend] = Task { await self.drain(backend) }
        }
    }

    /// Queues an update the store could not record.
    public func enqueueUnrecorded(_ update: UpdateBackendStateMessage) {
        lastUnrecorded -= 1
        enqueue(OutboxEntry(sequence: lastUnrecorded, update: update))
    }

    /// Updates not yet acknowledged.
    public var pendingCount: Int { queues.values.reduce(0) { $0 + $1.count } }

    /// Waits until everything queued was acknowledged, or the timeout passed; returns
    /// whether the outbox is empty.
    public func flush(timeout: Duration) async -> Bool {
        if pendingCount == 0 { return true }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.wakeEmptyWaiters()
        }
        await withCheckedContinuation { emptyWaiters.append($0) }
        timer.cancel()
        return pendingCount == 0
    }

    /// Stops sending (what is left stays in the store).
    public func stop() {
        for task in senders.values { task.cancel() }
        senders = [:]
        wakeEmptyWaiters()
    }

    private func wakeEmptyWaiters() {
        let waiters = emptyWaiters
        emptyWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    private func drain(_ backend: BackendID) async {
        var backoff = initialBackoff
        while !Task.isCancelled, let entry = queues[backend]?.first {
            if await send(entry) {
                do {
                    if entry.isRecorded { try await store.acknowledge(entry) }
                } catch {
                    logger.error("outbox.acknowledge_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
                }
                queues[backend]?.removeFirst()
                known.remove(entry.sequence)
                backoff = initialBackoff
            } else {
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, maxBackoff)
            }
        }
        if queues[backend]?.isEmpty ?? true {
            queues[backend] = nil
        }
        senders[backend] = nil
        if pendingCount == 0 { wakeEmptyWaiters() }
    }

    private func send(_ entry: OutboxEntry) async -> Bool {
        let update = entry.update
        do {
            _ = try await messenger.request(PlaneSubjects.updateBackendState(update.cluster, update.backend), update, timeout: requestTimeout)
            return true
        } catch {
            logger.notice("outbox.send_failed", metadata: ["plane.backend": "\(update.backend)", "plane.state": "\(update.state.rawValue)", "error": "\(error)"])
            return false
        }
    }
}
