from tests.staff_matrix import StaffUrl

STAFF_URLS = {
    "overview": StaffUrl(),
}
