import ArgumentParser
import Foundation
import OCIRuntime

/// `plane oci-shim BUNDLE`: the per-backend process of the `oci` runtime (see `OCIShim`).
/// The drone starts it; it is not meant to be run by hand. `plane oci-shim --standby` (a
/// shim started ahead of need, told its bundle on standard input) is only ever handled by
/// `PlaneMain.runShimIfAsked`.
struct OCIShimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: commandName,
        abstract: "Runs one backend of the oci runtime (started by the drone).",
        shouldDisplay: false
    )

    /// Also matched by `PlaneMain.runShimIfAsked`, which bypasses the parser.
    static let commandName = "oci-shim"

    @Argument(help: "The backend's bundle directory (with shim.json).")
    var bundle: String

    func run() throws {
        Foundation.exit(OCIShim.main(bundle: bundle))
    }
}
