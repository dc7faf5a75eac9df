from tests.staff_matrix import StaffUrl

STAFF_URLS = {
    "audit:log": StaffUrl(query={"action": "topup.record"}),
}
