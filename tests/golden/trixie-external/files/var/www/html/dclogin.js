/* Onboarding on relays with a self-signed certificate.
 *
 * Chat apps refuse to fetch credentials over HTTPS from a relay whose certificate they
 * cannot verify, so this page fetches a fresh address and password itself and hands
 * them to the app as a `dclogin:` link (button and QR code). Nothing is stored on the
 * relay until the app logs in for the first time.
 *
 * Needs qrcode-svg.min.js (the QRCode constructor) to be loaded before this file.
 */
(function () {
    "use strict";

    function showLogin(url) {
        document.getElementById("dclogin-link").href = url;
        document.getElementById("qr-link").href = url;
        var qr = new QRCode({
            content: url,
            width: 300,
            height: 300,
            padding: 1,
            join: true,
            // inline SVG in an HTML page: no XML prolog, and a viewBox so it scales with #qr-code
            xmlDeclaration: false,
            container: "svg-viewbox",
        });
        document.getElementById("qr-code").innerHTML = qr.svg();
    }

    function showError(message) {
        var box = document.getElementById("qr-code");
        if (box) {
            box.textContent = "Could not create a profile: " + message;
        }
    }

    function requestProfile() {
        // a GET: the relay only answers it in self-signed mode, each call proposes new credentials
        fetch("/new", { cache: "no-store" })
            .then(function (response) {
                if (!response.ok) {
                    throw new Error("HTTP " + response.status);
                }
                return response.json();
            })
            .then(function (data) {
                if (!data.dclogin_url) {
                    throw new Error("no dclogin_url in the answer");
                }
                showLogin(data.dclogin_url);
            })
            .catch(function (err) {
                showError(err.message);
            });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", requestProfile);
    } else {
        requestProfile();
    }
})();
