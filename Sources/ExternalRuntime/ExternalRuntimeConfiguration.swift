/// How the drone runs and talks to an out-of-process runtime plugin (`[agent]` keys
/// `plugin_call_timeout_secs`, `plugin_start_timeout_secs`).
public struct ExternalRuntimeConfiguration: Sendable, Hashable {
    /// The longest a call (status, stop, list, ...) may take before it fails with `timeout`.
    public var callTimeout: Duration = .seconds(30)
    /// The longest `prepare` and `start` may take (pulling an image can be slow).
    public var startTimeout: Duration = .seconds(600)
    /// The longest a started plugin may take to connect and answer `hello`.
    public var connectTimeout: Duration = .seconds(10)
    /// The first wait before restarting a plugin that died; doubles up to `maximumRestartBackoff`.
    public var restartBackoff: Duration = .milliseconds(500)
    public var maximumRestartBackoff: Duration = .seconds(30)
    /// Consecutive timed-out calls after which the plugin counts as hung and is restarted.
    public var hungAfterTimeouts = 3

    public init() {}
}
