// Fake Moodle core/ajax: like Moodle's AJAX failure handler, a call that fails because the
// session is missing sends the whole window to the login page.
(function () {
    var URL = {relativeUrl: function (path) { return M.cfg.wwwroot + path; }};
    fetch(M.cfg.wwwroot + '/lib/ajax/service.php?sesskey=' + M.cfg.sesskey, {method: 'POST', body: '[]'})
        .then(function (response) { return response.json(); })
        .then(function (data) {
            if (data && data.error && data.errorcode === 'servicerequireslogin') {
                window.location = URL.relativeUrl("/login/index.php");
            }
        });
})();
