import ContainerRuntime
import Logging
import NIOCore
import PlaneCore
import RuntimePluginProtocol
import Synchronization

/// The drone's end of one connection to a running plugin: calls matched to their answers
/// by id, each with a timeout; streams (`events`, `logs`) fed by items until `end`.
final class PluginConnection: Sendable {
    typealias Inbound = NIOAsyncChannelInboundStream<Result<PluginMessage, PluginProtocolError>>
    typealias Outbound = NIOAsyncChannelOutboundWriter<PluginMessage>

    struct PendingCall {
        var method: PluginMethod
        var continuation: CheckedContinuation<Result<JSONValue, RuntimeError>, Never>
        var timer: Task<Void, Never>?
    }

    struct State {
        var nextID: UInt64 = 1
        var calls: [UInt64: PendingCall] = [:]
        var streams: [UInt64: AsyncThrowingStream<JSONValue, any Error>.Continuation] = [:]
        var closed: RuntimeError?
        /// Calls that timed out since the last answer: a plugin that stops answering.
        var unansweredTimeouts = 0
    }

    let plugin: String
    let logger: Logger
    private let outbound: Outbound
    private let state = Mutex(State())
    /// Called when the connection closes or a call times out (what its supervisor watches).
    private let onChange: @Sendable () -> Void

    init(plugin: String, outbound: Outbound, logger: Logger, onChange: @escaping @Sendable () -> Void = {}) {
        self.plugin = plugin
        self.outbound = outbound
        self.logger = logger
        self.onChange = onChange
    }

    var isClosed: Bool { state.withLock { $0.closed != nil } }
    var unansweredTimeouts: Int { state.withLock { $0.unansweredTimeouts } }

    /// One call and its answer, or `.timeout` after `timeout`, or `.unavailable` when the
    /// connection ends first; the plugin's own errors come back as the `RuntimeError` it sent.
    func call(_ method: PluginMethod, _ params: JSONValue, timeout: Duration) async throws(RuntimeError) -> JSONValue {
        let result: Result<JSONValue, RuntimeError> = await withCheckedContinuation { continuation in
            let registered: UInt64? = state.withLock { state in
                guard state.closed == nil else { return nil }
                let id = state.nextID
                state.nextID += 1
                state.calls[id] = PendingCall(method: method, continuation: continuation)
                return id
            }
            guard let id = registered else {
                continuation.resume(returning: .failure(closedError()))
                return
            }
            let timer = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                self?.timedOut(id, method: method, after: timeout)
            }
            let pendingTimer: Bool = state.withLock { state in
                guard state.calls[id] != nil else { return false }
                state.calls[id]?.timer = timer
                return true
            }
            if !pendingTimer { timer.cancel() }
            Task { [outbound] in
                do {
                    try await outbound.write(.call(id: id, method: method.rawValue, params: params))
                } catch {
                    self.resolve(id, .failure(RuntimeError(.unavailable, "Cannot send \(method.rawValue) to runtime plugin '\(self.plugin)'; its connection is closed.", underlying: error)))
                }
            }
        }
        return try result.get()
    }

    /// A stream call: its items until the plugin ends it; ending the iteration early cancels
    /// it in the plugin.
    func stream(_ method: PluginMethod, _ params: JSONValue) -> AsyncThrowingStream<JSONValue, any Error> {
        let (stream, continuation) = AsyncThrowingStream<JSONValue, any Error>.makeStream()
        let registered: UInt64? = state.withLock { state in
            guard state.closed == nil else { return nil }
            let id = state.nextID
            state.nextID += 1
            state.streams[id] = continuation
            return id
        }
        guard let id = registered else {
            continuation.finish(throwing: closedError())
            return stream
        }
        continuation.onTermination = { [weak self] termination in
            guard let self, case .cancelled = termination else { return }
            // The cancel call's own answer is not awaited (it arrives unmatched).
            let cancelID = self.state.withLock { state -> UInt64? in
                guard state.streams.removeValue(forKey: id) != nil, state.closed == nil else { return nil }
                defer { state.nextID += 1 }
                return state.nextID
            }
            if let cancelID {
                Task { try? await self.outbound.write(.call(id: cancelID, method: PluginMethod.cancel.rawValue, params: .object(JSONObject([("id", .integer(id))])))) }
            }
        }
        Task { [outbound] in
            do {
                try await outbound.write(.call(id: id, method: method.rawValue, params: params))
            } catch {
                self.finishStream(id, throwing: RuntimeError(.unavailable, "Cannot send \(method.rawValue) to runtime plugin '\(self.plugin)'; its connection is closed.", underlying: error))
            }
        }
        return stream
    }

    /// Reads the plugin's messages until the connection ends, then fails whatever waits.
    func read(_ inbound: Inbound) async {
        var reason = "it closed the connection"
        do {
            for try await received in inbound {
                switch received {
                case .failure(let error):
                    logger.warning("plugin.malformed_message", metadata: ["plane.runtime": "\(plugin)", "error": "\(error.message)"])
                case .success(let message):
                    dispatch(message)
                }
            }
        } catch {
            reason = "its connection failed: \(error)"
            logger.warning("plugin.connection_failed", metadata: ["plane.runtime": "\(plugin)", "error": "\(error)"])
        }
        close(RuntimeError(.unavailable, "Runtime plugin '\(plugin)' is not connected (\(reason)); the drone restarts it."))
    }

    func dispatch(_ message: PluginMessage) {
        switch message {
        case .result(let id, let value):
            if !resolve(id, .success(value)) { unexpected(message) }
        case .failure(let id, let failure):
            let error = PluginWire.runtimeError(failure, plugin: plugin)
            if !resolve(id, .failure(error)), !finishStream(id, throwing: error) { unexpected(message) }
        case .item(let id, let value):
            let continuation = state.withLock { state -> AsyncThrowingStream<JSONValue, any Error>.Continuation? in
                state.unansweredTimeouts = 0
                return state.streams[id]
            }
            if let continuation { continuation.yield(value) } else { unexpected(message) }
        case .end(let id):
            if !finishStream(id, throwing: nil) { unexpected(message) }
        case .call(_, let method, _):
            logger.warning("plugin.unexpected_call", metadata: ["plane.runtime": "\(plugin)", "method": "\(method)"])
        }
    }

    func unexpected(_ message: PluginMessage) {
        // Answers to calls that timed out or streams that were cancelled arrive late: normal.
        logger.debug("plugin.unmatched_message", metadata: ["plane.runtime": "\(plugin)", "id": "\(message.id)"])
    }

    @discardableResult
    func resolve(_ id: UInt64, _ result: Result<JSONValue, RuntimeError>) -> Bool {
        let pending = state.withLock { state -> PendingCall? in
            let call = state.calls.removeValue(forKey: id)
            if call != nil, case .success = result { state.unansweredTimeouts = 0 }
            if call != nil, case .failure(let error) = result, error.code != .timeout { state.unansweredTimeouts = 0 }
            return call
        }
        guard let pending else { return false }
        pending.timer?.cancel()
        pending.continuation.resume(returning: result)
        return true
    }

    func timedOut(_ id: UInt64, method: PluginMethod, after timeout: Duration) {
        let pending = state.withLock { state -> PendingCall? in
            let call = state.calls.removeValue(forKey: id)
            if call != nil { state.unansweredTimeouts += 1 }
            return call
        }
        guard let pending else { return }
        onChange()
        logger.warning("plugin.call_timed_out", metadata: ["plane.runtime": "\(plugin)", "method": "\(method.rawValue)"])
        pending.continuation.resume(returning: .failure(RuntimeError(
            .timeout, "Runtime plugin '\(plugin)' did not answer \(method.rawValue) within \(timeout.components.seconds) s; it may be hung (the drone restarts a plugin that misses three calls in a row).")))
    }

    @discardableResult
    func finishStream(_ id: UInt64, throwing error: RuntimeError?) -> Bool {
        guard let continuation = state.withLock({ $0.streams.removeValue(forKey: id) }) else { return false }
        if let error { continuation.finish(throwing: error) } else { continuation.finish() }
        return true
    }

    /// Ends the connection's calls and streams with `error`.
    func close(_ error: RuntimeError) {
        let (calls, streams) = state.withLock { state in
            if state.closed == nil { state.closed = error }
            defer {
                state.calls = [:]
                state.streams = [:]
            }
            return (Array(state.calls.values), Array(state.streams.values))
        }
        for call in calls {
            call.timer?.cancel()
            call.continuation.resume(returning: .failure(error))
        }
        for stream in streams { stream.finish(throwing: error) }
        outbound.finish()
        onChange()
    }

    func closedError() -> RuntimeError {
        state.withLock { $0.closed } ?? RuntimeError(.unavailable, "Runtime plugin '\(plugin)' is not connected.")
    }
}
