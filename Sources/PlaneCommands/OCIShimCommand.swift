import ArgumentParser
import Foundation
import OCIRuntime

/// `plane oci-shim BUNDLE`: the per-backend process of the `oci` runtime (see `OCIShim`).
/// The drone starts it; it is not meant to be run by hand.
struct OCIShimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oci-shim",
        abstract: "Runs one backend of the oci runtime (started by the drone).",
        shouldDisplay: false
    )

    @Argument(help: "The backend's bundle directory (with shim.json).")
    var bundle: String

    func run() throws {
        Foundation.exit(OCIShim.main(bundle: bundle))
    }
}
